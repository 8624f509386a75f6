"""KTO's rows (unpaired files, paired files split, imbalance, class weights) and smoke runs
of --loss kto and --loss orpo."""
import json

import pytest

from data import pairs
from data.batching import DataError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_unpaired_rows_are_read_and_a_paired_file_is_split_in_halves(tmp_path):
    unpaired = write(tmp_path / "u.jsonl", [
        {"prompt": "What is 1 + 2?", "completion": "It is 3.", "label": True},
        {"prompt": "What is 1 + 2?", "completion": "No.", "label": False}])
    assert [r["label"] for r in pairs.read_labelled_answers(unpaired)] == [True, False]
    paired = write(tmp_path / "p.jsonl", [
        {"prompt": "What is 1 + 2?", "chosen": "It is 3.", "rejected": "No."}])
    assert pairs.read_labelled_answers(paired) == [
        {"prompt": "What is 1 + 2?", "completion": "It is 3.", "label": True},
        {"prompt": "What is 1 + 2?", "completion": "No.", "label": False}]


def test_a_label_that_is_not_a_boolean_names_file_line_and_field(tmp_path):
    bad = write(tmp_path / "bad.jsonl", [
        {"prompt": "What is 1 + 2?", "completion": "It is 3.", "label": True},
        {"prompt": "What is 1 + 2?", "completion": "No.", "label": "no"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'label' must be true or false"):
        pairs.read_labelled_answers(bad)


def test_imbalance_keeps_one_desirable_row_for_nine_undesirable():
    rows = [{"label": i < 60} for i in range(100)]                  # 60 good, 40 bad
    kept = pairs.imbalance(rows, 1 / 9, seed=0)
    assert sum(r["label"] for r in kept) == 4 and len(kept) == 44   # int(40 / 9) = 4
    assert pairs.imbalance(rows, 0, seed=0) == rows


def test_class_weights_balance_by_default_and_warn_outside_the_papers_range(capsys):
    labels = [True] * 10 + [False] * 90
    assert pairs.kto_weights(labels, None, 1.0) == (9.0, 1.0)      # w_D n_D = w_U n_U
    assert "warning" not in capsys.readouterr().out
    pairs.kto_weights([True] * 407 + [False] * 3667, None, 1.0)    # the ratio rounds to 1 - 1e-16
    assert "warning" not in capsys.readouterr().out
    pairs.kto_weights(labels, 1.0, 1.0)
    assert "outside [1, 4/3]" in capsys.readouterr().out


def test_kto_smoke_starts_at_half_and_moves_the_rewards_apart(dpo_smoke):
    metrics, log, out = dpo_smoke("kto", "--loss", "kto", "--max_steps", "20",
                                  "--learning_rate", "3e-3")
    kto_part = log[0]["loss"] - log[0]["nll_loss"]       # loss = kto + rpo_alpha (1) x nll
    assert kto_part == pytest.approx(0.5)                # 1 - sigmoid(0) at policy == reference
    assert log[0]["kl"] == 0.0
    assert log[-1]["rewards/chosen"] > log[-1]["rewards/rejected"]
    for key in ["kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"]:
        assert key in log[-1]
    assert (out / "kto.pt").is_file() and "win_rate_vs_sft" in metrics


def test_orpo_smoke_starts_from_pretraining_and_lowers_its_loss(dpo_smoke, capsys):
    metrics, log, out = dpo_smoke("orpo", "--loss", "orpo", "--max_steps", "20")
    assert f"the policy starts from {out / 'pretrain.pt'}" in capsys.readouterr().out
    assert (out / "orpo.pt").is_file()
    assert log[-1]["loss"] < log[0]["loss"]
    for key in ["nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen"]:
        assert key in log[-1]
    assert "win_rate_vs_sft" in metrics
