"""What compare.py measures in its own process, from each seed's SFT model: M answers to each
held-out prompt, and from them the ceiling (the KL-regularised optimum pi*), exact best-of-N,
the points DPO's and PPO's own objectives are minimised at, and each run's distance from the
ceiling; the spread of GRPO's group baseline against G; the SFT control's KL; the trainable
parameters of each kind of method; the memory runs' peaks."""

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from data.batching import ended, prompt_ids
from data.world import eval_prompts, is_correct, reward
from evaluation import generate, kl_to_reference, scores_of_answers
from experiments import ceiling
from experiments.claims import COMPARISONS
from experiments.methods import METHODS
from experiments.results import Results, mean, std
from model import ScoreModel, add_lora, load_checkpoint
from train_ppo import PPOConfig

BEST_OF = (1, 2, 4, 8, 16)
GROUP_SIZES = (2, 4, 8, 16)
SAMPLES = 64   # M answers per prompt (ceiling_check measures what doubling M moves)


def answers(model, prompts, samples: int, seed: int):
    """(true rewards (prompts, samples), texts, token rows) of the model's answers."""
    texts, tokens = generate(model, prompts, num_samples=samples, seed=seed)
    rewards = np.array([reward(prompts[i // samples], t) for i, t in enumerate(texts)])
    return rewards.reshape(len(prompts), samples), texts, tokens


def the_ceiling(rewards) -> list[dict]:
    """ceiling.curve with the bootstrap's spread of each point (reward_std, kl_std)."""
    spread = ceiling.bootstrap(rewards)
    return [{**p, **{k: v for k, v in s.items() if k != "beta"}}
            for p, s in zip(ceiling.curve(rewards), spread)]


def best_of_n(rewards) -> dict[str, dict]:
    """Exact best-of-N from the samples (ties broken at random), beside the tie-free bound."""
    return {str(n): dict(zip(("reward", "kl"), ceiling.best_of(rewards, n)),
                         kl_bound=ceiling.best_of_n_bound(n)) for n in BEST_OF}


def unfinished(tokens, samples: int) -> np.ndarray:
    """1.0 for each answer that never reached its end token, (prompts, samples): PPO takes
    --missing_eos_penalty off its score."""
    return np.array([float(not ended(t)) for t in tokens]).reshape(-1, samples)


@torch.no_grad()
def rm_scores(rm, prompts, tokens, samples: int) -> np.ndarray:
    """The reward model's score of each sampled answer, (prompts, samples)."""
    rows = [prompt_ids(p) for p in prompts for _ in range(samples)]
    return scores_of_answers(rm, rows, tokens).cpu().numpy().reshape(-1, samples)


def eos_penalty(m, unfinished):
    """What PPO takes off the score of an answer that never ends (--missing_eos_penalty) times
    `unfinished` (1.0 for such an answer, or a share of them); 0 for the other methods."""
    return PPOConfig.missing_eos_penalty * unfinished if m.script == "train_ppo.py" else 0.0


def objective(m, value: str, rewards, rm, eos):
    """(scores (prompts, M), beta) of the objective E[s] - beta KL(pi || pi_ref) whose optimum
    method m is promised at knob `value`, by its Method.promise, or None: "labels", the paper's
    DPO loss on Bradley-Terry labels at temperature T, s = r at beta' = T beta (pi ∝ pi_ref
    exp(r / (T beta))); "reward model", PPO's, s = the RM's score at kl_coef; "true reward",
    s = r at beta. PPO's s loses its missing-EOS penalty on the answers that never end (eos:
    1.0 for those). rm: the reward model's scores, or None without one."""
    penalty = eos_penalty(m, eos)
    if m.promise == "labels":
        return rewards, float(m.flags["label_temperature"]) * float(value)
    if m.promise == "reward model" and rm is not None:
        return rm - penalty, float(value)
    if m.promise == "true reward":
        return rewards - penalty, float(value)
    return None


def promised(rewards, rm, eos) -> dict[str, dict[str, tuple]]:
    """{method: {knob: (true reward, KL)}}: where each method's own objective is maximised
    (objective()), read off on the true reward."""
    out = {}
    for m in METHODS.values():
        for v in m.values:
            target = objective(m, v, rewards, rm, eos)
            if target is not None:
                out.setdefault(m.name, {})[v] = ceiling.optimum(target[0], rewards, target[1])
    return out


def run_score(m, run) -> float:
    """The mean score s of a run's answers, in its objective's units (objective()): its true
    reward, or for PPO the RM's score or the true reward, less the missing-EOS penalty times
    the share of its answers that never ended."""
    return (run.get("rm_score") if m.promise == "reward model" else run.get("reward_mean")) \
        - eos_penalty(m, run.get("unfinished"))


def distances(results: Results, seed: str, rewards, rm=None, eos=None) -> dict:
    """{method: {knob value: {"gap", "efficiency", "regret"}}} for this seed's runs: the reward
    gap R*(KL) - R at the run's KL, the KL efficiency KL*(R) / KL (the least KL any policy
    needs for the run's reward, over the KL it spent), and for a method with a promised point
    the objective regret J*(beta) - (S - beta KL) (ceiling.regret, S: run_score, at the run's
    own beta; NaN where its KL came out below 0, an estimate's error, not a policy)."""
    out = {}
    for m in METHODS.values():
        for v in results.knobs_run(m.name):
            run = results.runs_of(m.name, v).get(seed)
            if run is None:
                continue
            kl, r = run.get("kl_to_ref"), run.get("reward_mean")
            if math.isfinite(kl) and math.isfinite(r):
                target = objective(m, v, rewards, rm, eos)
                out.setdefault(m.name, {})[v] = {
                    "gap": ceiling.reward_at(rewards, kl) - r,
                    "efficiency": ceiling.kl_needed(rewards, r) / kl if kl > 0 else math.nan,
                    "regret": math.nan if target is None or kl < 0 else
                    ceiling.regret(*target, run_score(m, run), kl)}
    return out


def answers_of(out: Path, results: Results, arm, seed: str) -> dict[str, np.ndarray] | None:
    """One arm's held-out answers on one seed, a column per field of its <stage>_samples.jsonl
    (evaluation.sample_rows: reward, correct, length, finished, kl), or None without them."""
    method, knob = arm
    if method == "sft":
        path = out / results.sft_folder(seed) / "sft_samples.jsonl"
    else:
        run = results.runs_of(method, knob).get(seed)
        path = None if run is None else out / run.folder / f"{run.stage}_samples.jsonl"
    if path is None or not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if not all(k in rows[0] for k in ("length", "finished")):
        return None                                    # written before these were kept
    columns = {k: np.array([float(r.get(k, 0.0)) for r in rows])      # the SFT model: kl 0
               for k in ("reward", "correct", "length", "finished", "kl")}
    columns["prompts"] = [r["prompt"] for r in rows]
    return columns


def paired_noise(results: Results, out: Path, seed: str, prompts, rewards, rm, eos,
                 draws: int = 200) -> dict[str, float]:
    """{comparison: the standard error of its paired difference on this seed from evaluation
    noise alone}: each draw resamples the held-out prompts (with replacement), the same for
    both arms, and recomputes the difference of the arms' numbers (claims.METRICS): a mean
    over the answers, the reward gap from the seed's ceiling (fixed: it is shared by both
    arms), or the regret, prompt by prompt (J*(beta) on the prompt, from its M answers, less
    S - beta KL of the run's answer: the ceiling's prompts are the runs'). NaN where an arm's
    answers, or its prompts' match, are missing, and for a number with no answers behind it
    (a path's drawdown)."""
    rng = np.random.default_rng(int(seed))
    noise = {}
    for c in COMPARISONS:
        arms = [answers_of(out, results, arm, seed) if arm else None for arm in (c.a, c.b)]
        if arms[0] is None or (c.b and arms[1] is None) or c.metric == "drawdown" or \
                any(a is not None and a["prompts"] != prompts for a in arms):
            noise[c.name] = math.nan
            continue
        n = len(arms[0]["reward"])
        idx = rng.integers(0, n, (draws, n))
        diff = np.zeros(draws)
        for sign, arm, cols in ((1, c.a, arms[0]), (-1, c.b, arms[1])):
            if arm is None:
                continue
            if c.metric in ("reward", "correct", "length", "kl"):
                x = cols[c.metric][idx].mean(1)
            elif c.metric == "gap":
                x = np.array([ceiling.reward_at(rewards, k) for k in cols["kl"][idx].mean(1)]) \
                    - cols["reward"][idx].mean(1)
            else:                               # regret: J* - (S - beta KL), per prompt
                m = METHODS[arm[0]]
                target = objective(m, arm[1], rewards, rm, eos)
                if target is None or m.promise == "reward model":      # no RM score per answer
                    x = np.full(draws, math.nan)
                else:
                    score = cols["reward"] - eos_penalty(m, 1 - cols["finished"])
                    per_prompt = ceiling.values(*target) - (score - target[1] * cols["kl"])
                    x = per_prompt[idx].mean(1)
            diff += sign * x
        noise[c.name] = float(diff.std(ddof=1))
    return noise


def group_baseline(model, prompts, texts, samples: int, seed: int) -> dict[str, dict]:
    """GRPO's advantage is (r - group mean) / group std. For each G, from the SFT model's
    answers to the prompts split in groups of G: how far the group mean (the baseline every
    answer is compared with) moves between groups of one prompt (std over its groups, mean over
    prompts); the share of groups with one reward for all (zero std: no gradient); and the
    seconds to sample G answers for every prompt."""
    correct = torch.tensor([float(is_correct(prompts[i // samples], t))
                            for i, t in enumerate(texts)]).view(len(prompts), samples)
    out = {}
    for G in GROUP_SIZES:
        groups = correct[:, :samples // G * G].reshape(len(prompts), samples // G, G)
        t0 = time.perf_counter()
        generate(model, prompts, num_samples=G, seed=seed + G)
        out[str(G)] = {"baseline_std": groups.mean(-1).std(-1).mean().item(),
                       "frac_zero_std": (groups.std(-1) == 0).float().mean().item(),
                       "sample_seconds": time.perf_counter() - t0}
    return out


def trainable_params(sft_path) -> dict[str, int]:
    """Trainable parameters, by Method.trainable: every weight of the model, the LoRA
    adapters (rank 8, the default targets), or the policy and PPO's critic (a ScoreModel)."""
    model, _ = load_checkpoint(sft_path)
    full = model.num_params()
    add_lora(model, 8, 16.0)
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    critic = ScoreModel(model.config).num_params()
    return {"model": full, "lora": lora, "model + critic": full + critic}


def measure(results: Results, seeds: list[int], out: Path, smoke: bool) -> None:
    """The measurements made in this process, per seed, from the seed's SFT model (and its
    reward model, for PPO's promised points), into results, on the runs' held-out prompts."""
    prompts = eval_prompts(results.eval_prompts)
    M = 32 if smoke else SAMPLES
    for seed in seeds:
        s, folder = str(seed), out / f"seed{seed}"
        sft, _ = load_checkpoint(folder / "sft.pt")
        # twice M answers on the first seed: the ceiling from M of them against all 2M
        R, texts, tokens = answers(sft, prompts, 2 * M if seed == seeds[0] else M, seed + 7)
        if seed == seeds[0]:
            results.ceiling_check = ceiling_check(R, M)
            first = [i % (2 * M) < M for i in range(len(texts))]     # each prompt's first M
            R = R[:, :M]
            texts, tokens = ([x for x, keep in zip(xs, first) if keep] for xs in (texts, tokens))
        results.ceiling[s] = the_ceiling(R)
        results.best_of_n[s] = best_of_n(R)
        rm = folder / "rm.pt"
        scores = rm_scores(load_checkpoint(rm, cls=ScoreModel)[0].eval(), prompts, tokens, M) \
            if rm.exists() else None
        eos = unfinished(tokens, M)
        results.promised_by_seed[s] = promised(R, scores, eos)
        results.distance[s] = distances(results, s, R, scores, eos)
        for name, se in paired_noise(results, out, s, prompts, R, scores, eos).items():
            results.noise.setdefault(name, {})[s] = se
        results.group_baseline[s] = group_baseline(sft, prompts[:64], texts[:64 * M], M, seed)
        control = results.runs_of("sft_control").get(s)
        if control:
            more, _ = load_checkpoint(out / control.folder / "sft.pt")
            _, control_tokens = generate(more, prompts, seed=seed)
            results.sft_control_kl[s] = kl_to_reference(more, sft, prompts, control_tokens)
    results.promised = average_promised(results.promised_by_seed)
    results.trainable_params = trainable_params(out / f"seed{seeds[0]}" / "sft.pt")


def ceiling_check(rewards, M: int) -> dict:
    """How far the ceiling from M answers a prompt sits from the one from 2M: the largest
    difference in reward at the 2M curve's KLs, and in J*(beta) (the regret's) at the betas
    the runs use (0.01 and up)."""
    full = ceiling.curve(rewards)
    half = rewards[:, :M]
    return {"M": M, "doubled": 2 * M, "max_reward_change": max(
        abs(ceiling.reward_at(half, p["kl"]) - p["reward"]) for p in full),
        "max_value_change": max(abs(ceiling.value(half, b) - ceiling.value(rewards, b))
                                for b in ceiling.BETAS if b >= 0.01)}


def average_promised(by_seed: dict) -> dict:
    """{method: {knob: {"kl", "reward", "kl_std", "reward_std"}}} over the seeds."""
    out = {}
    for per_seed in by_seed.values():
        for name, points in per_seed.items():
            for v, point in points.items():
                out.setdefault(name, {}).setdefault(v, []).append(point)
    return {name: {v: {"reward": mean(p[0] for p in pts), "kl": mean(p[1] for p in pts),
                       "reward_std": std(p[0] for p in pts), "kl_std": std(p[1] for p in pts)}
                   for v, pts in points.items()} for name, points in out.items()}
