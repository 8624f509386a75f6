"""End-to-end smoke runs of the training scripts (seconds each, tiny models)."""
import json
import shutil

import pytest

import train_dpo
import train_sft
from train_utils import parse_config


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    metrics = train_sft.main(parse_config(train_sft.SFTConfig, "", ["--smoke", "--out_dir",
                                                                    str(out)]))
    return out, metrics


def test_sft_smoke_writes_everything(sft_dir):
    out, metrics = sft_dir
    for name in ["pretrain.pt", "sft.pt", "sft_eval.json", "sft_samples.jsonl",
                 "pretrain_metrics.jsonl", "sft_metrics.jsonl"]:
        assert (out / name).is_file(), name
    ev = json.loads((out / "sft_eval.json").read_text())
    for key in ["accuracy", "accuracy_greedy", "reward_mean", "mean_length", "seconds",
                "persona/rude"]:
        assert key in ev
    rows = [json.loads(l) for l in (out / "sft_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"prompt", "response", "reward"}
    losses = [json.loads(l)["loss"] for l in (out / "pretrain_metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_dpo_smoke_raises_the_margin(sft_dir, tmp_path):
    out, _ = sft_dir
    shutil.copy(out / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_dpo.DPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--max_steps", "20", "--learning_rate", "3e-3"])
    metrics = train_dpo.main(cfg)
    log = [json.loads(l) for l in (tmp_path / "dpo_metrics.jsonl").read_text().splitlines()]
    assert log[0]["loss"] == pytest.approx(0.6931, abs=1e-3)          # policy == reference
    assert log[-1]["rewards/margins"] > 0.1
    for name in ["dpo.pt", "dpo_eval.json", "dpo_samples.jsonl"]:
        assert (tmp_path / name).is_file()
    assert "win_rate_vs_sft" in metrics and "kl_to_ref" in metrics
