"""End-to-end smoke runs of the training scripts (seconds each, tiny models)."""
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_dpo
import train_grpo
from plumbing.flags import parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_sft_smoke_writes_everything(sft_dir):
    out, metrics = sft_dir
    for name in ["pretrain.pt", "sft.pt", "sft_eval.json", "sft_samples.jsonl",
                 "pretrain_metrics.jsonl", "sft_metrics.jsonl"]:
        assert (out / name).is_file(), name
    ev = json.loads((out / "sft_eval.json").read_text())
    for key in ["accuracy", "accuracy_greedy", "reward_mean", "mean_length", "eval_seconds",
                "persona/rude"]:
        assert key in ev
    rows = [json.loads(l) for l in (out / "sft_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"prompt", "response", "reward", "correct",
                                                "length", "finished"}
    assert sum(r["reward"] for r in rows) / 16 == pytest.approx(ev["reward_mean"])
    assert sum(r["length"] for r in rows) / 16 == pytest.approx(ev["mean_length"])
    lines = [json.loads(l) for l in (out / "pretrain_metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < lines[0]["loss"]
    probed = [r["step"] + 1 for r in lines if "heldout/all" in r]      # --jump_every 10 of 20
    assert probed == [10, 20]
    assert all(0 <= r[f"heldout/{kind}"] <= 1 for r in lines if "heldout/all" in r
               for kind in ("add", "sub", "compare", "reverse"))


def test_the_jump_is_the_first_probed_step_past_the_bar(tmp_path):
    import train_sft
    path = tmp_path / "pretrain_metrics.jsonl"
    assert train_sft.the_jump(path) == (None, None)                 # nothing measured
    rows = [{"step": s, "loss": 1.0} for s in range(6000)]
    for step, right in [(999, 0.3), (1999, train_sft.JUMP_AT - 0.01), (2999, train_sft.JUMP_AT),
                        (3999, 0.7), (5999, 0.99)]:
        rows[step]["heldout/all"] = right
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert train_sft.the_jump(path) == (3000, 6000)
    path.write_text("".join(json.dumps({**r, "heldout/all": 0.5}) + "\n" for r in rows[::1000]))
    assert train_sft.the_jump(path) == (None, 5001)                  # never got there


def test_a_weak_draw_is_named_with_what_to_do():
    import train_sft
    cfg = train_sft.SFTConfig(seed=4, out_dir="out/s4")
    strong = {"accuracy_greedy": 0.99, "answer_skill": 0.98}
    assert train_sft.weak_draw(strong, 3000, 6000, cfg) is None
    assert train_sft.weak_draw(strong, None, None, cfg) is None      # jump not measured
    warning = train_sft.weak_draw({**strong, "accuracy_greedy": 0.953}, 3000, 6000, cfg)
    assert "accuracy_greedy 0.953 (bar 0.98)" in warning and "answer_skill" not in warning
    assert f"--seed 4 --pretrain_steps {int(1.5 * cfg.pretrain_steps)} --out_dir out/s4" in warning
    assert "--seed 5" in warning
    late = train_sft.weak_draw(strong, 4250, 6000, cfg)
    assert "only at pretraining step 4250 of 6000 (bar: by step 4000)" in late
    assert "at no step" in train_sft.weak_draw(strong, None, 6000, cfg)


def test_dpo_smoke_raises_the_margin(sft_dir, tmp_path):
    out, _ = sft_dir
    shutil.copy(out / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_dpo.DPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--max_steps", "20", "--learning_rate", "3e-3",
                                                 "--rpo_alpha", "0.5"])
    metrics = train_dpo.main(cfg)
    log = [json.loads(l) for l in (tmp_path / "dpo_metrics.jsonl").read_text().splitlines()]
    dpo_part = log[0]["loss"] - 0.5 * log[0]["nll_loss"]               # loss = dpo + alpha nll
    assert dpo_part == pytest.approx(0.6931, abs=1e-3)                 # policy == reference
    assert log[-1]["rewards/margins"] > 0.1
    for name in ["dpo.pt", "dpo_eval.json", "dpo_samples.jsonl"]:
        assert (tmp_path / name).is_file()
    assert "win_rate_vs_sft" in metrics and "kl_to_ref" in metrics


def test_a_new_pair_loss_is_one_entry_in_objectives(sft_dir, tmp_path, monkeypatch):
    """SLiC's hinge (Zhao et al. 2023) on the log-ratio margin, registered by one entry: its
    function, the log-probs it takes, its keyword arguments. It trains and is what ran."""
    from dataclasses import replace
    seen = []

    def slic_loss(chosen, rejected, ref_chosen, ref_rejected, beta, delta):
        seen.append((chosen.shape, delta))
        margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
        return torch.relu(delta - margin), beta * (chosen - ref_chosen).detach(), \
            beta * (rejected - ref_rejected).detach()
    monkeypatch.setitem(train_dpo.OBJECTIVES, "slic", train_dpo.Objective(
        loss=slic_loss, reference=True, start="sft.pt", knob="beta", usual=(0.01, 1),
        defaults=train_dpo.OBJECTIVES["dpo"].defaults, logps=lambda cfg: "mean",
        kwargs=lambda cfg: {"beta": cfg.beta, "delta": 1.0}))
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_dpo.DPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--max_steps", "3"])
    metrics = train_dpo.main(replace(cfg, loss="slic"))
    assert len(seen) >= 3 and all(delta == 1.0 for _, delta in seen)
    first = json.loads((tmp_path / "slic_metrics.jsonl").read_text().splitlines()[0])
    assert first["slic_loss"] == pytest.approx(1.0)          # policy == reference: relu(1 - 0)
    assert "kl_to_ref" in metrics


def test_dpo_trains_with_a_loss_function_it_is_given(sft_dir, tmp_path, capsys):
    """The notebooks pass their own loss; main must use it for every step and the eval."""
    from losses import dpo_loss
    calls = []

    def spy(*args, **hyperparameters):
        calls.append(hyperparameters)
        return dpo_loss(*args, **hyperparameters)
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_dpo.DPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--max_steps", "3", "--label_smoothing", "0.1"])
    train_dpo.main(cfg, loss_fn=spy)
    assert len(calls) >= 3
    # the hyperparameters come by keyword, so a notebook's loss sees the flags' values
    assert all(c == {"beta": 0.1, "label_smoothing": 0.1} for c in calls)
    assert "SFT vs dpo (beta 0.1, with loss_fn=spy passed to main())" in capsys.readouterr().out


def test_grpo_smoke_raises_the_reward_of_a_trivial_rule(sft_dir, tmp_path, monkeypatch):
    """A rule a random tiny model already meets sometimes: the share of spaces in its
    answer. GRPO must raise it, and write its files."""
    def spaces(prompt, answer):
        return answer.count(" ") / max(1, len(answer))
    monkeypatch.setitem(train_grpo.REWARDS, "rule", spaces)
    out, _ = sft_dir
    shutil.copy(out / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_grpo.GRPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                   "--max_steps", "30", "--learning_rate", "1e-2",
                                                   "--num_iterations", "2",
                                                   "--no-mask_truncated"])  # it never ends
    metrics = train_grpo.main(cfg)
    log = [json.loads(l) for l in (tmp_path / "grpo_metrics.jsonl").read_text().splitlines()]
    first = sum(r["reward"] for r in log[:5]) / 5
    last = sum(r["reward"] for r in log[-5:]) / 5
    assert last > first + 0.05, (first, last)
    assert max(r["clip_ratio"] for r in log) > 0         # the 2nd update of a batch clips
    for name in ["grpo.pt", "grpo_eval.json", "grpo_samples.jsonl"]:
        assert (tmp_path / name).is_file()
    assert "kl_to_ref" in metrics


def test_rollout_masks_exactly_the_sampled_answer_tokens(sft_dir):
    from model import load_checkpoint
    model, _ = load_checkpoint(sft_dir[0] / "sft.pt", "cpu")
    cfg = train_grpo.GRPOConfig(num_generations=3, max_new_tokens=6, mask_truncated=False)
    prompts = ["What is 12 + 34?", "Reverse the digits of 123."]
    batch = train_grpo.sample_and_score(model, prompts, cfg, torch.Generator().manual_seed(0),
                                        torch.device("cpu"))
    assert batch["inputs"].shape[0] == 6
    # each row's mask counts its sampled tokens, and the masked targets are those tokens
    assert batch["mask"].sum(1).tolist() == batch["lengths"].tolist()
    cut = train_grpo.GRPOConfig(num_generations=3, max_new_tokens=6)
    masked = train_grpo.sample_and_score(model, prompts, cut, torch.Generator().manual_seed(0),
                                         torch.device("cpu"))
    assert masked["loss_mask"].sum(1).tolist() == [
        n if f else 0 for n, f in zip(batch["lengths"].tolist(), batch["finished"].tolist())]
    assert torch.equal(masked["mask"], batch["mask"])     # the KL still reads every answer


def test_a_truncated_answer_pays_its_kl_in_the_reward():
    """--mask_truncated takes an answer cut off at max_new_tokens out of the loss, not out of
    the group's statistics: with the KL in the reward its reward still loses beta times its
    log-ratio summed over all of its tokens."""
    cfg = train_grpo.GRPOConfig(kl_in="reward", beta=0.5)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])        # answer 2 ran to the limit
    batch = {"rewards": torch.tensor([1.0, 1.0]), "mask": mask,
             "loss_mask": mask * torch.tensor([[1.0], [0.0]])}
    logps = torch.tensor([[-1.0, -1.0, 0.0], [-1.0, -1.0, -1.0]])
    ref_logps = torch.tensor([[-2.0, -1.5, 0.0], [-2.0, -2.0, -2.0]])
    assert torch.allclose(train_grpo.penalised(cfg, batch, logps, ref_logps),
                          torch.tensor([1 - 0.5 * 1.5, 1 - 0.5 * 3.0]))
    cfg.kl_in = "loss"                                    # the KL is the loss's: r untouched
    assert torch.equal(train_grpo.penalised(cfg, batch, logps, ref_logps), batch["rewards"])


def test_bench_prints_every_row(tmp_path):
    from experiments import bench
    rows = bench.main(parse_config(bench.BenchConfig, "", ["--smoke", "--out_dir", str(tmp_path)]))
    kv, naive = rows["sampling, kv cache"], rows["sampling, naive"]
    assert kv["tokens"] == naive["tokens"] > 0                    # the same tokens drawn
    assert rows["matmul peak"]["GFLOP/s"] > 0 and 0 < rows["train step"]["MFU"]
    assert rows["dpo step"]["steps/s"] > 0 and kv["speedup"] > 0
    lora = rows["dpo step, LoRA r=8"]
    assert lora["steps/s"] > 0 and 0 < lora["trainable (M)"] < rows["dpo step"]["trainable (M)"]


@pytest.mark.parametrize("script", ["train_sft.py", "train_dpo.py", "train_grpo.py", "train_rm.py",
                                    "train_ppo.py", "experiments/bench.py",
                                    "experiments/sweep.py", "sample.py", "experiments/compare.py"])
def test_help_shows_the_docstrings_examples(script):
    out = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    assert f"python {script}" in out


@pytest.mark.parametrize("script,config", [("train_sft", "SFTConfig"), ("train_dpo", "DPOConfig"),
                                           ("train_grpo", "GRPOConfig"), ("train_rm", "RMConfig"),
                                           ("train_ppo", "PPOConfig"),
                                           ("experiments.bench", "BenchConfig")])
def test_each_flag_states_its_default_at_most_once_and_is_in_a_group(script, config):
    import importlib
    from plumbing.flags import GROUP_ORDER, build_parser
    module = importlib.import_module(script)
    parser = build_parser(getattr(module, config), module.__doc__)
    for group in parser._action_groups[2:]:                 # after positionals and options
        assert group.title in GROUP_ORDER + ["sampling"], group.title
        for action in group._group_actions:
            assert action.help.count("(default:") <= 1, action.help
            assert "(default: None)" not in action.help and "(default: )" not in action.help


@pytest.mark.parametrize("flags", [["--advantage", "rloo", "--reward", "judge"],
                                   ["--advantage", "rloo", "--beta", "0"],
                                   ["--advantage", "best", "--reward", "judge"],
                                   ["--loss_type", "dr_grpo", "--scale_rewards", "none",
                                    "--kl_in", "reward", "--no-mask_truncated"],
                                   ["--kl_in", "loss", "--kl_estimator", "k2"]])
def test_the_online_variants_train_and_evaluate(sft_dir, tmp_path, flags):
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_grpo.GRPOConfig, "", ["--smoke", "--out_dir", str(tmp_path), *flags])
    metrics = train_grpo.main(cfg)
    log = [json.loads(l) for l in (tmp_path / "grpo_metrics.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(math.isfinite(r["loss"]) for r in log)       # --smoke: 4 steps
    assert "kl_to_ref" in metrics and (tmp_path / "grpo.pt").is_file()


@pytest.mark.parametrize("kl_in", ["loss", "reward"])
def test_the_kl_goes_where_kl_in_says(sft_dir, tmp_path, monkeypatch, kl_in):
    """--kl_in loss hands the loss the reference's log-probs; --kl_in reward hands it none and
    takes beta x the sampling policy's log-ratio, summed over each answer, off its reward
    before the advantages are made."""
    from losses import grpo_loss, kl_penalised_rewards
    seen = {"ref": [], "penalised": []}

    def loss(logps, old_logps, ref_logps, advantages, mask, **kw):
        seen["ref"].append(ref_logps)
        seen["old"] = old_logps
        return grpo_loss(logps, old_logps, ref_logps, advantages, mask, **kw)

    def penalised(rewards, logps, ref_logps, mask, beta):
        out = kl_penalised_rewards(rewards, logps, ref_logps, mask, beta)
        seen["penalised"].append((logps, beta, out))
        return out
    advantages_of = train_grpo.advantages_of
    monkeypatch.setattr(train_grpo, "kl_penalised_rewards", penalised)
    monkeypatch.setattr(train_grpo, "advantages_of", lambda cfg, rewards, rng: (
        seen.__setitem__("rewards", rewards), advantages_of(cfg, rewards, rng))[1])
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    train_grpo.main(parse_config(train_grpo.GRPOConfig, "", [
        "--smoke", "--out_dir", str(tmp_path), "--max_steps", "1", "--beta", "0.5",
        "--kl_in", kl_in]), loss_fn=loss)
    if kl_in == "loss":
        assert seen["ref"][0] is not None and not seen["penalised"]
    else:
        (logps, beta, out), = seen["penalised"]
        assert seen["ref"] == [None] and beta == 0.5
        assert torch.equal(logps, seen["old"]) and torch.equal(seen["rewards"], out)


def test_iterative_dpo_samples_each_round_from_the_policy_as_it_is(sft_dir, tmp_path,
                                                                   monkeypatch):
    """--rounds 2: round one's pairs come from the SFT model, round two's from the policy
    after round one's steps, not from the SFT model (answers written by personas stand in for
    the tiny model's samples, which are too long to fit the context)."""
    from data.world import PERSONA_MIX, parse_prompt, respond
    from model import load_checkpoint
    samplers = []

    def personas_answer(model, prompts, *, num_samples, seed, beside):
        samplers.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        rng = random.Random(seed)
        return [respond(parse_prompt(p), persona, rng) for p in prompts
                for persona in rng.sample(list(PERSONA_MIX), num_samples)]
    monkeypatch.setattr(train_dpo, "kept_answers", personas_answer)
    cfg = train_dpo.DPOConfig(out_dir=str(tmp_path), init_from=str(sft_dir[0] / "sft.pt"),
                              rounds=2, num_prompts=64, max_steps=4, batch_size=8,
                              learning_rate=1e-2, eval_prompts=16)
    train_dpo.main(cfg)
    sft = torch.cat([p.flatten() for p in load_checkpoint(sft_dir[0] / "sft.pt")[0].parameters()])
    assert len(samplers) == 2
    assert torch.equal(samplers[0], sft) and not torch.allclose(samplers[1], sft)
    assert sorted(p.name for p in tmp_path.glob("pairs*.jsonl")) == ["pairs_round0.jsonl",
                                                                      "pairs_round1.jsonl"]


def test_eval_every_writes_the_path_of_true_reward_and_kl(sft_dir, tmp_path):
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    cfg = parse_config(train_dpo.DPOConfig, "", ["--smoke", "--out_dir", str(tmp_path),
                                                 "--eval_every", "5"])
    metrics = train_dpo.main(cfg)
    path = [json.loads(l) for l in (tmp_path / "dpo_path.jsonl").read_text().splitlines()]
    assert [p["step"] for p in path] == [5, 10]                   # --smoke: 10 steps
    assert set(path[0]) == {"step", "reward", "kl", "seconds"}
    assert path[-1]["reward"] == pytest.approx(metrics["reward_mean"])   # the same samples
    assert path[-1]["kl"] == pytest.approx(metrics["kl_to_ref"], abs=1e-4)


def test_the_sft_models_answers_are_sampled_once_and_kept_beside_it(sft_dir, tmp_path,
                                                                     monkeypatch):
    import os
    from model import load_checkpoint
    import evaluation
    ckpt = tmp_path / "sft.pt"
    shutil.copy(sft_dir[0] / "sft.pt", ckpt)
    model, calls = load_checkpoint(ckpt)[0], []
    generate = evaluation.generate

    def counting(*args, **kwargs):
        calls.append(1)
        return generate(*args, **kwargs)
    monkeypatch.setattr(evaluation, "generate", counting)
    prompts = ["What is 12 + 34?", "Reverse the digits of 123."]
    first = evaluation.kept_answers(model, prompts, num_samples=3, seed=5, beside=ckpt)
    again = evaluation.kept_answers(model, prompts, num_samples=3, seed=5, beside=ckpt)
    assert first == again == generate(model, prompts, num_samples=3, seed=5)[0]
    assert len(calls) == 1 and len(list(tmp_path.glob("sft_answers_k3_s5_*.jsonl"))) == 1
    evaluation.kept_answers(model, prompts[:1], num_samples=3, seed=5, beside=ckpt)  # others
    assert len(calls) == 2
    os.utime(ckpt)                          # a newer checkpoint: its answers are sampled anew
    evaluation.kept_answers(model, prompts, num_samples=3, seed=5, beside=ckpt)
    assert len(calls) == 3
