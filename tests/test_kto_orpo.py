"""KTO's rows (unpaired files, paired files split, imbalance, class weights) and smoke runs
of --loss kto and --loss orpo."""
import json
import shutil
from types import SimpleNamespace

import pytest

import kto
import train_dpo
from cli import parse_config
from data.batching import DataError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_unpaired_rows_are_read_and_a_paired_file_is_split_in_halves(tmp_path):
    unpaired = write(tmp_path / "u.jsonl", [
        {"prompt": "What is 1 + 2?", "completion": "It is 3.", "label": True},
        {"prompt": "What is 1 + 2?", "completion": "No.", "label": False}])
    assert [r["label"] for r in kto.read_rows(unpaired)] == [True, False]
    paired = write(tmp_path / "p.jsonl", [
        {"prompt": "What is 1 + 2?", "chosen": "It is 3.", "rejected": "No."}])
    assert kto.read_rows(paired) == [
        {"prompt": "What is 1 + 2?", "completion": "It is 3.", "label": True},
        {"prompt": "What is 1 + 2?", "completion": "No.", "label": False}]


def test_a_label_that_is_not_a_boolean_names_file_line_and_field(tmp_path):
    bad = write(tmp_path / "bad.jsonl", [
        {"prompt": "What is 1 + 2?", "completion": "It is 3.", "label": True},
        {"prompt": "What is 1 + 2?", "completion": "No.", "label": "no"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'label' must be true or false"):
        kto.read_rows(bad)


def test_imbalance_keeps_one_desirable_row_for_nine_undesirable():
    rows = [{"label": i < 60} for i in range(100)]                  # 60 good, 40 bad
    kept = kto.imbalance(rows, 1 / 9, seed=0)
    assert sum(r["label"] for r in kept) == 4 and len(kept) == 44   # int(40 / 9) = 4
    assert kto.imbalance(rows, 0, seed=0) == rows


def test_class_weights_balance_by_default_and_warn_outside_the_papers_range(capsys):
    encoded = [(None, None, True)] * 10 + [(None, None, False)] * 90
    cfg = SimpleNamespace(desirable_weight=None, undesirable_weight=1.0)
    assert kto.class_weights(cfg, encoded) == (9.0, 1.0)            # w_D n_D = w_U n_U
    assert "warning" not in capsys.readouterr().out
    cfg.desirable_weight = 1.0
    kto.class_weights(cfg, encoded)
    assert "outside [1, 4/3]" in capsys.readouterr().out


def smoke(sft_dir, tmp_path, *flags):
    for name in ("pretrain.pt", "sft.pt"):
        shutil.copy(sft_dir[0] / name, tmp_path / name)
    cfg = parse_config(train_dpo.DPOConfig, "", ["--smoke", "--out_dir", str(tmp_path), *flags])
    metrics = train_dpo.main(cfg)
    log = [json.loads(l) for l in (tmp_path / f"{cfg.loss}_metrics.jsonl").read_text().splitlines()]
    return metrics, log


def test_kto_smoke_starts_at_half_and_moves_the_rewards_apart(sft_dir, tmp_path):
    metrics, log = smoke(sft_dir, tmp_path, "--loss", "kto", "--max_steps", "20",
                         "--learning_rate", "3e-3")
    kto_part = log[0]["loss"] - log[0]["nll_loss"]       # loss = kto + rpo_alpha (1) x nll
    assert kto_part == pytest.approx(0.5)                # 1 - sigmoid(0) at policy == reference
    assert log[0]["kl"] == 0.0
    assert log[-1]["rewards/chosen"] > log[-1]["rewards/rejected"]
    for key in ["kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"]:
        assert key in log[-1]
    assert (tmp_path / "kto.pt").is_file() and "win_rate_vs_sft" in metrics


def test_orpo_smoke_starts_from_pretraining_and_lowers_its_loss(sft_dir, tmp_path, capsys):
    metrics, log = smoke(sft_dir, tmp_path, "--loss", "orpo", "--max_steps", "20")
    assert f"orpo starts from {tmp_path / 'pretrain.pt'}" in capsys.readouterr().out
    assert (tmp_path / "orpo.pt").is_file()
    assert log[-1]["loss"] < log[0]["loss"]
    for key in ["nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen"]:
        assert key in log[-1]
    assert "win_rate_vs_sft" in metrics
