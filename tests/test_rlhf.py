"""The reward model and PPO scripts: scoring, normalising, ranking, smoke runs, clear errors."""
import json
import math
import shutil

import pytest
import torch

import train_ppo
import train_rm
from plumbing.flags import parse_config
from data.batching import chat_batch
from model import GPT, GPTConfig, ScoreModel, load_checkpoint, sequence_scores
from test_reliability import cli

CFG = GPTConfig(vocab_size=600, block_size=32, n_layer=1, n_head=2, n_embd=16)

PPO_METRICS = ["objective/kl", "objective/scores", "objective/rlhf_reward",
               "objective/non_score_reward", "objective/entropy", "policy/approxkl_avg",
               "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg"]


def test_sequence_scores_read_each_row_at_its_own_last_token():
    torch.manual_seed(0)
    model = ScoreModel(CFG)
    prompts, completions = [[1, 2, 3], [4, 5], [6]], [[7, 8], [9, 10, 11, 12], [13]]
    scores = sequence_scores(model, *chat_batch(prompts, completions))
    # each row alone, no padding: its score at its last position
    alone = [model(torch.tensor([p + c]))[0, -1] for p, c in zip(prompts, completions)]
    assert torch.allclose(scores, torch.stack(alone), atol=1e-5)


def test_normalise_gives_the_rows_mean_zero_and_std_one():
    torch.manual_seed(0)
    model = ScoreModel(CFG)
    prompts = [[1, 2, i] for i in range(20)]
    completions = [[i + 20, i + 40] for i in range(20)]
    with torch.no_grad():
        before = train_rm.scores_of(model, prompts, completions, "cpu")
        mean, std = train_rm.normalise(model, prompts, completions)
        after = train_rm.scores_of(model, prompts, completions, "cpu")
    assert (mean, std) == pytest.approx((before.mean().item(), before.std().item()))
    assert after.mean().item() == pytest.approx(0, abs=1e-5)
    assert after.std().item() == pytest.approx(1, abs=1e-5)
    assert torch.allclose(after, (before - mean) / std, atol=1e-5)     # the same order


def test_rank_correlation_by_hand_with_ties():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert train_rm.rank_correlation(x, x ** 3) == pytest.approx(1.0)
    assert train_rm.rank_correlation(x, -x) == pytest.approx(-1.0)
    # y = (0, 0, 1) has ranks (0.5, 0.5, 2): Pearson with (0, 1, 2) is 1.5 / sqrt(2 * 1.5)
    assert train_rm.rank_correlation(torch.tensor([1.0, 2.0, 3.0]),
                                     torch.tensor([0.0, 0.0, 1.0])) == \
        pytest.approx(1.5 / math.sqrt(3.0))


def test_a_score_model_starts_from_the_gpt_and_round_trips_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    gpt = GPT(CFG)
    rm = ScoreModel.from_gpt(gpt)
    idx = torch.randint(CFG.vocab_size, (2, 5))
    assert torch.equal(rm.body(idx), gpt(idx))                      # the same body
    from model import save_checkpoint
    save_checkpoint(tmp_path / "rm.pt", rm, {}, 0, stage="rm")
    loaded, _ = load_checkpoint(tmp_path / "rm.pt", cls=ScoreModel)
    assert torch.equal(loaded(idx), rm(idx))
    with pytest.raises(ValueError, match="holds a reward model"):
        load_checkpoint(tmp_path / "rm.pt")                          # not a language model


def test_rm_smoke_learns_its_pairs_and_writes_everything(rm_dir):
    log = [json.loads(l) for l in (rm_dir / "rm_metrics.jsonl").read_text().splitlines()]
    assert {"loss", "accuracy", "margin"} <= set(log[0])
    first = sum(r["loss"] for r in log[:5]) / 5
    last = sum(r["loss"] for r in log[-5:]) / 5
    assert last < first - 0.1, (first, last)
    ev = json.loads((rm_dir / "rm_eval.json").read_text())
    for key in ["pair_accuracy", "rank_correlation", "label_agreement"]:
        assert -1 <= ev[key] <= 1
    rm, ckpt = load_checkpoint(rm_dir / "rm.pt", cls=ScoreModel)
    assert ckpt["stage"] == "rm" and ckpt["normalised_from"]["std"] > 0


def test_ppo_smoke_logs_trls_metrics_and_raises_the_score(rm_dir, tmp_path):
    for name in ["sft.pt", "rm.pt"]:
        shutil.copy(rm_dir / name, tmp_path / name)
    cfg = parse_config(train_ppo.PPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--max_steps", "60", "--learning_rate", "1e-3"])
    metrics = train_ppo.main(cfg)
    log = [json.loads(l) for l in (tmp_path / "ppo_metrics.jsonl").read_text().splitlines()]
    assert set(PPO_METRICS) <= set(log[0])
    assert log[0]["objective/kl"] == pytest.approx(0, abs=1e-5)     # policy == reference
    first = sum(r["objective/scores"] for r in log[:5]) / 5
    last = sum(r["objective/scores"] for r in log[-5:]) / 5
    assert last > first + 0.2, (first, last)
    assert max(r["policy/clipfrac_avg"] for r in log) > 0            # later updates clip
    for name in ["ppo.pt", "ppo_eval.json", "ppo_samples.jsonl"]:
        assert (tmp_path / name).is_file()
    assert {"win_rate_vs_sft", "kl_to_ref", "rm_score", "peak_memory_mb"} <= set(metrics)


def test_ppo_uses_the_gae_and_loss_it_is_given(rm_dir, tmp_path):
    """The notebook passes its own GAE and clipped objective; main must use them."""
    from losses import gae, ppo_loss
    calls = {"gae": 0, "loss": 0}

    def my_gae(*args, **kwargs):
        calls["gae"] += 1
        return gae(*args, **kwargs)

    def my_loss(*args, **kwargs):
        calls["loss"] += 1
        return ppo_loss(*args, **kwargs)
    for name in ["sft.pt", "rm.pt"]:
        shutil.copy(rm_dir / name, tmp_path / name)
    cfg = parse_config(train_ppo.PPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--max_steps", "2"])
    train_ppo.main(cfg, loss_fn=my_loss, gae_fn=my_gae)
    assert calls == {"gae": 2, "loss": 2 * cfg.num_ppo_epochs * cfg.num_mini_batches}


def test_ppo_without_a_reward_model_ends_in_one_clear_line(sft_dir, tmp_path):
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    status, err = cli("train_ppo.py", "--smoke", "--out_dir", tmp_path)
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "rm.pt: no reward model; train_rm.py writes it" in err


def test_sampling_from_a_reward_model_ends_in_one_clear_line(rm_dir):
    status, err = cli("sample.py", rm_dir / "rm.pt", "What is 1 + 2?")
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "holds a reward model (a scalar head), where a language model is needed" in err


def test_ppo_on_the_true_reward_holds_no_reward_model(sft_dir, tmp_path):
    """--reward judge: the answers are scored by the toy world's reward (less the missing-EOS
    penalty), so three models are held, and the evaluation has no reward model's score."""
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_ppo.PPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--reward", "judge"])
    metrics = train_ppo.main(cfg)
    log = [json.loads(l) for l in (tmp_path / "ppo_metrics.jsonl").read_text().splitlines()]
    assert log[0]["models_in_memory"] == 3 and "rm_score" not in metrics
    for r in log:
        assert r["objective/scores"] == pytest.approx(
            r["objective/true_reward"] - cfg.missing_eos_penalty * r["completions/truncated"],
            abs=1e-6)
