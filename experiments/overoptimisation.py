"""The reward model as RLHF's bottleneck, measured: reward models of three qualities, the
true reward ("gold") each lets best-of-N and PPO reach, and how each is over-optimised
(Gao, Schulman and Hilton 2022, "Scaling Laws for Reward Model Overoptimization").

    python experiments/overoptimisation.py                 # seeds 0-2, 2 runs at a time
    python experiments/overoptimisation.py --smoke         # one seed, seconds-long runs
    python experiments/overoptimisation.py --report sweeps/overoptimisation/overoptimisation.json
    python experiments/overoptimisation.py --metrics out/ppo_kl0/ppo_metrics.jsonl   # one run

The toy world's true reward is the gold: no gold model is learned. Per seed, from its SFT
model (sweep.py's planner: each seed's SFT model trained once, finished runs reused):
- Reward models of three qualities: train_rm.py on RM_PROMPTS pairs (125, 500, 4000 prompts).
  Each one's accuracy: on 1200 held-out prompts, two pairs of SFT answers each, the share
  of the pairs with different true rewards (at least 2000) whose better answer it scores
  higher (ties in score: half).
- Best-of-N ranked by each reward model, exact over the SFT model's 64 answers to each of
  256 held-out prompts (ceiling.best_of_by; compare.py's ceiling's answers), N = 1 ... 64:
  the gold of the pick, the reward model's own score of it, the KL to the SFT model.
- PPO on each reward model with a weak leash (--kl_coef 0 and 0.01), 400 steps, its path
  every 25 (--eval_every), from the SFT model's own point: the gold, the reward model's raw
  score and the share of answers that never end (PPO maximises the score less 1 for each),
  the KL.
- Gao et al.'s forms fitted to the gold's gain over the SFT model against d = sqrt(KL), per
  reward model (ceiling.fit_gao): best-of-N d (alpha - beta d), PPO d (alpha - beta log d).
  The gold is bounded, so a fit can peak where the data does not: peaks are read from the
  data, the fits are shapes.
- The first article's claims, judged seed by seed (claims.judge_seeds).
Writes into --out: overoptimisation.json (everything measured), overoptimisation.md (the
tables, the fits, the verdicts) and overoptimisation.png; with --figure, the plot there too.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np

from experiments import ceiling, sweep
from experiments.claims import judge_seeds, outcome
from experiments.report import md_table
from experiments.results import mean, ms

ROOT = Path(__file__).resolve().parents[1]
RM_PROMPTS = ("125", "500", "4000")        # pairs each reward model learns from: its quality
KL_COEFS = ("0", "0.01")                    # a weak leash: none, and a small one
DELTA = 0.02                                # the smallest gain in gold that matters
STEPS, EVERY = 400, 25                      # PPO's steps, and its path's spacing
BEST_OF = (1, 2, 4, 8, 16, 32, 64)
SAMPLES, PROMPTS = 64, 256            # the ceiling's answers: 64 to each of 256 prompts
# the reward models' held-out pairs: 1200 prompts (the held-out split holds 2107), two pairs of
# SFT answers each; about 11% of pairs tie in true reward
PAIR_PROMPTS, PAIRS_EACH, MIN_PAIRS = 1200, 2, 2000
SCORE, TRUE, KL = "objective/scores", "objective/true_reward", "objective/kl"


# ------------------------------------------------------------------ what runs

def rm_chain(n: str, smoke: bool) -> list[list[str]]:
    return [["train_sft.py", *smoked(smoke)], ["train_rm.py", "--num_prompts", n, *smoked(smoke)]]


def ppo_chain(n: str, kl_coef: str, smoke: bool) -> list[list[str]]:
    steps = ["--max_steps", "4", "--eval_every", "1"] if smoke else \
        ["--max_steps", str(STEPS), "--eval_every", str(EVERY)]
    return [["train_sft.py", *smoked(smoke)],
            ["train_ppo.py", "--reward_model", f"{{seed_dir}}/{rm_folder(n, smoke)}/rm.pt", "--kl_coef",
             kl_coef, *steps, *smoked(smoke)]]


def smoked(smoke: bool) -> list[str]:
    return ["--smoke"] if smoke else []


def rm_folder(n: str, smoke: bool) -> str:
    """The folder sweep.py gives the reward model on n prompts (its chain's last step)."""
    return sweep.folder_name(rm_chain(n, smoke)[-1])


def train(seeds: list[int], out: Path, jobs: int, smoke: bool) -> dict:
    """The reward models, then PPO on each (it reads them): {(n, kl_coef): {seed: folder}},
    and the failed runs."""
    rms, ppos = [rm_chain(n, smoke) for n in RM_PROMPTS], \
        {(n, k): ppo_chain(n, k, smoke) for n in RM_PROMPTS for k in KL_COEFS}
    failed, folders = [], {}
    for chains in (rms, list(ppos.values())):
        runs, todo = sweep.plan(chains, seeds, out)
        sweep.run_steps(todo, jobs)
        failed += [f"{' '.join(last.argv)} seed {seed}" for seed, _, last in runs if not last.ok]
        if chains is not rms:
            keys = list(ppos)
            for seed, c, last in runs:
                if last.ok:
                    folders.setdefault("/".join(keys[c]), {})[str(seed)] = str(last.folder)
    return {"ppo_folders": folders, "failed": failed}


# ------------------------------------------------------------------ what is measured here

def measure_seed(out: Path, seed: int, smoke: bool, ppo_folders: dict, draws: int = 200) -> dict:
    """Per seed: the SFT answers' gold, the ceiling, best-of-N by the gold and by each reward
    model (with `draws` bootstrap resamplings of the prompts of each one's best-of-N peak,
    the same resamplings for every reward model), each reward model's accuracy, PPO's paths
    and their start: the SFT model's own path point (the answers PPO's first point would
    draw, by the same seed). A reward model whose run failed is None."""
    from data.world import eval_prompts, reward
    from evaluation import generate, path_point
    from experiments.measure import answers, rm_scores
    from model import ScoreModel, load_checkpoint
    folder = out / f"seed{seed}"
    sft, _ = load_checkpoint(folder / "sft.pt")
    prompts = eval_prompts(16 if smoke else PROMPTS)
    M = 8 if smoke else SAMPLES
    gold, _, tokens = answers(sft, prompts, M, seed + 7)            # (prompts, M), as compare's
    pair_prompts = eval_prompts(32 if smoke else PAIR_PROMPTS)
    each = 2 * PAIRS_EACH                                  # answers a prompt: pairs side by side
    texts2, tokens2 = generate(sft, pair_prompts, num_samples=each, seed=seed + 11)
    r2 = np.array([reward(pair_prompts[i // each], t) for i, t in enumerate(texts2)]).reshape(-1, 2)
    differ = r2[:, 0] != r2[:, 1]
    if not smoke and differ.sum() < MIN_PAIRS:
        sys.exit(f"error: seed {seed}: {differ.sum()} held-out pairs with different true "
                 f"rewards, fewer than {MIN_PAIRS}: raise PAIRS_EACH")
    ns = [n for n in BEST_OF if n <= M]
    idx = np.random.default_rng(seed).integers(0, len(prompts), (draws, len(prompts)))
    out_seed = {"sft_gold": float(gold.mean()), "answer_std": float(gold.std()),
                "ceiling": ceiling.curve(gold),
                "best_of_gold": [dict(zip(("n", "gold", "kl"), (n, *ceiling.best_of(gold, n))))
                                 for n in ns], "reward_models": {}}
    for n in RM_PROMPTS:
        path = folder / rm_folder(n, smoke) / "rm.pt"
        if not path.exists():
            out_seed["reward_models"][n] = None
            continue
        rm = load_checkpoint(path, cls=ScoreModel)[0].eval()
        proxy = rm_scores(rm, prompts, tokens, M)                               # (prompts, M)
        s2 = rm_scores(rm, pair_prompts, tokens2, each).reshape(-1, 2)
        right = np.where(s2[:, 0] == s2[:, 1], 0.5,
                         ((s2[:, 0] > s2[:, 1]) == (r2[:, 0] > r2[:, 1])).astype(float))
        by_n = [ceiling.best_of_by(proxy, gold, k, per_prompt=True) for k in ns]
        golds = np.stack([g for g, _ in by_n], 1)                             # (prompts, N)
        runs = {k: read_path(Path(ppo_folders[f"{n}/{k}"][str(seed)]) / "ppo_path.jsonl", path)
                for k in KL_COEFS if str(seed) in ppo_folders.get(f"{n}/{k}", {})}
        out_seed["reward_models"][n] = {
            "accuracy": float(right[differ].mean()), "pairs": int(differ.sum()),
            "sft_proxy": float(proxy.mean()), "proxy_std": float(proxy.std()),
            "best_of": [{"n": k, "gold": float(g.mean()), "kl": float(kl.mean()),
                         "proxy": ceiling.best_of_by(proxy, proxy, k)[0]}
                        for k, (g, kl) in zip(ns, by_n)],
            "peak_draws": golds[idx].mean(1).max(1).tolist(),          # the peak, resampled
            "start": path_point(sft, sft, prompts, seed=seed, scorer=rm),
            "ppo": runs}
    return out_seed


def read_path(path: Path, rm: Path) -> list[dict]:
    """A PPO run's path, refused if its reward model was written after it (a retrained
    reward model: the runs on the old one are stale; sweep into a new --out)."""
    if not path.exists():
        return []
    if rm.stat().st_mtime > path.stat().st_mtime:
        sys.exit(f"error: {path} is older than its reward model {rm}: run into a new --out")
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ fits, peaks, claims

def smoothed(points: list[dict], key: str, k: int = 3) -> list[float]:
    """Each point's `key` averaged with its neighbours (k points, fewer at the ends): a
    path's peak read from one noisy point is biased up (the largest of many)."""
    values = [p[key] for p in points]
    h = k // 2
    return [mean(values[max(0, i - h):i + h + 1]) for i in range(len(values))]


def ppo_points(per_seed: dict, n: str, k: str) -> list[dict]:
    """A PPO run's path as points, its start (the SFT model's point) first: {step, kl,
    gold, proxy: the score PPO maximises, the reward model's less the missing-EOS penalty
    on the answers that never end, raw: the reward model's own score, unfinished}."""
    from experiments.measure import eos_penalty
    from experiments.methods import METHODS
    rm = per_seed["reward_models"][n]
    if rm is None or k not in rm["ppo"] or not rm["ppo"][k]:
        return []
    return [{"step": p.get("step", 0), "kl": p["kl"], "gold": p["reward"],
             "proxy": p["rm_score"] - eos_penalty(METHODS["ppo"], p["unfinished"]),
             "raw": p["rm_score"], "unfinished": p["unfinished"]}
            for p in [rm["start"], *rm["ppo"][k]]]


def peak_of(points: list[dict]) -> dict:
    """The path's peak, read from the data (its smoothed gold's highest point): that point
    with its smoothed numbers in place of its own (its KL too: the gold's neighbours')."""
    if not points:
        return {}
    keys = [k for k in ("gold", "kl", "proxy", "raw", "unfinished") if k in points[0]]
    smooth = {k: smoothed(points, k) for k in keys}
    i = max(range(len(points)), key=smooth["gold"].__getitem__)
    return {**points[i], **{k: v[i] for k, v in smooth.items()}}


def ppo_peak(s: dict, n: str) -> dict:
    """The highest gold peak of PPO on reward model n over its leashes (each path smoothed
    on its own: the paths are two runs, not one)."""
    peaks = [peak_of(ppo_points(s, n, k)) for k in KL_COEFS]
    return max((p for p in peaks if p), key=lambda p: p["gold"], default={})


def best_of_peak(rm: dict) -> dict:
    return max(rm["best_of"], key=lambda b: b["gold"])


def fits(results: dict) -> dict:
    """{n: {"bon" | "rl": {alpha, beta, rms, points, peak_d, in_range}}}: Gao et al.'s forms
    on the gold's gain over the SFT model (the mean over its 64 answers a prompt) against
    d = sqrt(KL), every seed's points together, PPO's two leashes together (KL < 0, an
    estimate's error near the start, read as 0); the fit's own peak, d* = alpha / (2 beta)
    for best-of-N (<= 0 where alpha <= 0: the gold falls from the start) and
    exp(alpha / beta - 1) for RL (NaN where beta <= 0: no peak), and whether the data reach
    it (0 < d* <= the largest d)."""
    out = {}
    for n in RM_PROMPTS:
        for kind in ("bon", "rl"):
            d, r = [], []
            for s in results["seeds"].values():
                rm = s["reward_models"][n]
                if rm is None:
                    continue
                pts = rm["best_of"] if kind == "bon" else \
                    [p for k in KL_COEFS for p in ppo_points(s, n, k)[1:]]
                d += [math.sqrt(max(p["kl"], 0.0)) for p in pts]
                r += [p["gold"] - s["sft_gold"] for p in pts]
            if len(d) < 3:
                continue
            alpha, beta = ceiling.fit_gao(d, r, kind)
            x = np.array(d)
            shape = x ** 2 if kind == "bon" else x * np.log(np.where(x > 0, x, 1.0))
            top = math.nan if beta <= 0 else alpha / (2 * beta) if kind == "bon" else \
                math.exp(min(alpha / beta - 1, 700.0))          # (past any data, not overflow)
            out.setdefault(n, {})[kind] = {
                "alpha": alpha, "beta": beta, "points": len(d),
                "rms": float(np.sqrt(np.mean((alpha * x - beta * shape - np.array(r)) ** 2))),
                "peak_d": top, "in_range": bool(0 < top <= max(d))}
    return out


def noise_delta(s: dict, n_prompts: int, points: int = 3, among: int = 1) -> float:
    """Twice the standard error of a difference of two path readings, each a mean over
    `points` path points of one answer's gold on each of n_prompts prompts (the answers'
    std as the SFT model's). among > 1: one reading is the highest of `among` (a peak), so
    the 2 becomes z at 0.05 / among, two-sided (Bonferroni): a flat path's highest point
    sits above its end by more than 2 SE far more often than 1 time in 20."""
    z = 2.0 if among == 1 else NormalDist().inv_cdf(1 - 0.025 / among)
    return z * math.sqrt(2) * s["answer_std"] / math.sqrt(points * n_prompts)


def accuracies_apart(rms: list[dict]) -> bool:
    """Each reward model's held-out accuracy above the one before by more than twice the
    standard error of their difference (binomial, on each one's pairs)."""
    se = lambda a: a["accuracy"] * (1 - a["accuracy"]) / a["pairs"]     # noqa: E731
    return all(b["accuracy"] - a["accuracy"] > 2 * math.sqrt(se(a) + se(b))
               for a, b in zip(rms, rms[1:]))


def judge(results: dict) -> list[dict]:
    """The first article's "The Reward Model is a bottleneck: RM quality directly caps the
    alignment ceiling, and it's easy to exploit", as three claims judged seed by seed
    (claims.judge_seeds):
    - caps (best-of-N; PPO): the reward models in order of held-out accuracy (which must be
      apart by more than its noise, else the seed is "accuracies within noise"); each step
      up raises the gold's peak by more than delta (beyond), each lowers it (reversed), each
      within delta (within); steps that disagree: "steps differ". Best-of-N's delta: DELTA or
      twice the standard error of the step from resampling the prompts (peak_draws), if
      larger; PPO's: DELTA or noise_delta, the peaks being means of 3 path points. Within a
      delta the noise widened past DELTA is "within the noise" (claims.outcome).
    - exploit: PPO without a leash (kl_coef 0): from its gold's peak to the end (the last 3
      points), the reward model's raw score rises and the gold falls, each by more than its
      delta (noise_delta, in its own units; the gold's widened for the peak being the
      highest of the path's points), on every reward model: beyond; on none, and nothing
      reversed: within; a fall of the score or a rise of the gold beyond delta: reversed.
      The raw score, not the one PPO maximises (less the penalty for answers that never
      end): a score that rose only by ending more answers games nothing."""
    claims, n_prompts = [], results["prompts"]
    for kind in ("bon", "ppo"):
        outcomes, measured = {}, []
        for seed, s in results["seeds"].items():
            if any(s["reward_models"][n] is None for n in RM_PROMPTS):
                outcomes[seed] = None
                continue
            order = sorted(RM_PROMPTS, key=lambda n: s["reward_models"][n]["accuracy"])
            rms = [s["reward_models"][n] for n in order]
            if kind == "bon":
                peaks = [best_of_peak(rm)["gold"] for rm in rms]
                draws = [np.array(rm["peak_draws"]) for rm in rms]
                delta = max([DELTA] + [2 * float(np.std(b - a, ddof=1))
                                      for a, b in zip(draws, draws[1:])])
            else:
                peaks = [ppo_peak(s, n).get("gold", math.nan) for n in order]
                delta = max(DELTA, noise_delta(s, n_prompts))
            steps = [outcome(b - a, delta, DELTA) for a, b in zip(peaks, peaks[1:])]
            outcomes[seed] = None if None in steps else "accuracies within noise" \
                if not accuracies_apart(rms) else steps[0] if len(set(steps)) == 1 \
                else f"steps differ: {', '.join(steps)}"
            measured.append(f"seed {seed}: " + ", ".join(
                f"{n} pairs (accuracy {rm['accuracy']:.3f}) {g:.3f}"
                for n, rm, g in zip(order, rms, peaks)) + f" (delta {delta:.3f})")
        claims.append({"claim": "RM quality directly caps the alignment ceiling: the gold's "
                                "peak rises with the reward model's accuracy (" +
                                ("best-of-N" if kind == "bon" else "PPO") + ")",
                       "measured": "; ".join(measured), "verdict": judge_seeds(outcomes)})
    outcomes, measured = {}, []
    for seed, s in results["seeds"].items():
        per_rm = []
        for n in RM_PROMPTS:
            pts = ppo_points(s, n, "0")
            if len(pts) < 4:
                per_rm.append(None)
                continue
            top = peak_of(pts)
            end = {k: mean(p[k] for p in pts[-3:]) for k in ("gold", "raw", "unfinished")}
            gold_fell = outcome(top["gold"] - end["gold"],
                                max(DELTA, noise_delta(s, n_prompts, among=len(pts))), DELTA)
            rm_delta = noise_delta({"answer_std": s["reward_models"][n]["proxy_std"]}, n_prompts)
            score_rose = outcome(end["raw"] - top["raw"], rm_delta, rm_delta)      # no unit
            both = {gold_fell, score_rose}                           # but the noise's
            rest = sorted(both - {"beyond"})           # "within", "within the noise (...)"
            per_rm.append("beyond" if not rest else "reversed" if "reversed" in rest else
                          rest[-1])                    # within the noise, where one is
            measured.append(f"seed {seed}, {n} pairs: gold {top['gold']:.3f} at step "
                            f"{top['step']} -> {end['gold']:.3f} (last 3 points), the RM's raw "
                            f"score {top['raw']:.3f} -> {end['raw']:.3f} (answers that never "
                            f"end {top['unfinished']:.2f} -> {end['unfinished']:.2f})")
        outcomes[seed] = None if None in per_rm else per_rm[0] if len(set(per_rm)) == 1 \
            else f"reward models differ: {', '.join(per_rm)}"
    claims.append({"claim": "and it's easy to exploit: PPO without a leash, past the gold's "
                            "peak, raises the reward model's score while the gold falls",
                   "measured": "; ".join(measured), "verdict": judge_seeds(outcomes)})
    return claims


# ------------------------------------------------------------------ the page and the picture

def ceiling_gain_share(s: dict, gold: float, kl: float) -> float:
    """The run's gold gain over the SFT model as a share of the ceiling's gain at its KL;
    NaN past the ceiling's reach (its largest KL: all weight on each prompt's best answers,
    log(64 / their number), about 1.9 nats on this task's SFT models)."""
    pts = sorted((p["kl"], p["reward"]) for p in s["ceiling"])
    if kl > pts[-1][0]:
        return math.nan
    top = float(np.interp(max(kl, 0.0), [k for k, _ in pts], [r for _, r in pts]))
    return (gold - s["sft_gold"]) / (top - s["sft_gold"]) if top > s["sft_gold"] else math.nan


def fit_peak(f: dict) -> str:
    """A fit's own peak d*, in words where there is none."""
    if math.isnan(f["peak_d"]):
        return "no peak (beta <= 0)"
    if f["peak_d"] <= 0:
        return "none: falls from the start (alpha <= 0)"
    return f"{f['peak_d']:.2f}" + ("" if f["in_range"] else " (past the data)")


def report(results: dict) -> str:
    seeds = results["seeds"]
    rows = []
    for n in RM_PROMPTS:
        have = [s for s in seeds.values() if s["reward_models"][n] is not None]
        rms = [s["reward_models"][n] for s in have]
        bon = [best_of_peak(rm) for rm in rms]
        ppo = [ppo_peak(s, n) for s in have]
        rows.append([n, ms([rm["accuracy"] for rm in rms]), ms([rm["pairs"] for rm in rms], ".0f"),
                     ms([b["gold"] for b in bon]), ms([b["n"] for b in bon], ".0f"),
                     ms([ceiling_gain_share(s, b["gold"], b["kl"]) for s, b in zip(have, bon)],
                        ".0%"),
                     ms([p.get("gold", math.nan) for p in ppo]),
                     ms([math.sqrt(max(p.get("kl", math.nan), 0.0)) for p in ppo], ".2f"),
                     ms([ceiling_gain_share(s, p["gold"], p["kl"]) for s, p in zip(have, ppo)
                         if p], ".0%")])
    fit_rows = [[n, kind, f"{f['alpha']:.3f}", f"{f['beta']:.3f}", f"{f['rms']:.3f}",
                 f["points"], fit_peak(f)]
                for n, by in results["fits"].items() for kind, f in by.items()]
    first = next(iter(seeds.values()))
    gold_bon = [[b["n"], ms([s["best_of_gold"][i]["gold"] for s in seeds.values()]),
                 ms([s["best_of_gold"][i]["kl"] for s in seeds.values()], ".2f")]
                for i, b in enumerate(first["best_of_gold"])]
    return "\n\n".join([
        f"# Reward over-optimisation (seeds {', '.join(seeds)}; n = {len(seeds)})",
        *(["**A --smoke report: tiny models, seconds-long runs; the numbers mean nothing.**"]
          if results["smoke"] else []),
        f"{results['date']}, {results['seconds']:.0f} s wall, {results['machine']}." +
        (f" Failed: {', '.join(results['failed'])}." if results["failed"] else ""),
        "## Reward models and the gold each lets a policy reach",
        "Held-out accuracy: on SFT answer pairs whose true rewards differ. The gold's peak "
        "(the true reward, read from the data): under best-of-N ranked by the reward model "
        "(exact over the 64 stored answers a prompt), and along PPO's paths (kl_coef 0 and "
        "0.01, each path on its own; 3-point means, one answer a prompt), with d = sqrt(KL) "
        "there; each as a share of the ceiling pi*'s gain over the SFT model (its mean over "
        "64 answers a prompt) at the same KL (empty past the ceiling's reach: its largest KL, "
        f"{mean(max(p['kl'] for p in s['ceiling']) for s in seeds.values()):.2f} nats here, "
        "all of pi*'s weight on each prompt's best answers, which often tie). The ceiling is "
        "pi* reweighting the SFT model's 64 answers a prompt, which reaches less at a high "
        "KL than pi* over every answer: PPO, whose answers are its own, can pass 100%. The "
        "peaks are the highest of many noisy points, each biased up by about as much.",
        md_table(["RM pairs", "held-out accuracy", "pairs judged", "best-of-N gold peak",
                  "at N", "of the ceiling's gain", "PPO gold peak", "at d",
                  "of the ceiling's gain"], rows),
        "## Best-of-N by the true reward itself (the gold ranking its own samples)",
        md_table(["N", "gold", "KL"], gold_bon),
        "## Gao et al.'s forms, fitted",
        "On the gold's gain over the SFT model against d = sqrt(KL), every seed's points "
        "together (PPO: kl_coef 0 and 0.01 together, as Gao et al. pool their runs): "
        "best-of-N d (alpha - beta d), PPO d (alpha - beta log d); rms: the fit's residual; "
        "the fit's own peak d*, which the gold's bound can put where the data never go.",
        md_table(["RM pairs", "form", "alpha", "beta", "rms", "points", "fit's peak d*"],
                 fit_rows),
        "## The article's claims",
        md_table(["claim", "measured", "verdict"],
                 [[c["claim"], c["measured"], c["verdict"]] for c in results["claims"]])])


def plot(results: dict, paths: list[Path]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))      # (PPO falls far below best-of-N)
    seeds = list(results["seeds"].values())
    colors = dict(zip(RM_PROMPTS, ("tab:red", "tab:orange", "tab:green")))
    for ax, kind in zip(axes, ("best-of-N, ranked by the reward model (exact)",
                               "PPO on the reward model, kl_coef 0 (mean over seeds by step)")):
        n_pts = len(seeds[0]["ceiling"])
        ax.plot([mean(math.sqrt(s["ceiling"][i]["kl"]) for s in seeds) for i in range(n_pts)],
                [mean(s["ceiling"][i]["reward"] - s["sft_gold"] for s in seeds)
                 for i in range(n_pts)], "k-", lw=2, label="the ceiling pi* (true reward)")
        proxy_ax = ax.twinx()
        for n in RM_PROMPTS:
            have = [s for s in seeds if s["reward_models"][n] is not None]
            # each a gain over the SFT model's 64 answers a prompt; the RM's raw score (PPO
            # maximises it less the penalty for answers that never end)
            pts = [[{**p, "base": s["sft_gold"], "pbase": s["reward_models"][n]["sft_proxy"],
                     "proxy": p.get("raw", p["proxy"])} for p in path]
                   for s, path in ((s, s["reward_models"][n]["best_of"] if kind.startswith("best")
                                    else ppo_points(s, n, "0")) for s in have) if path]
            if not pts:
                continue
            length = min(map(len, pts))
            d = [mean(math.sqrt(max(p[i]["kl"], 0.0)) for p in pts) for i in range(length)]
            g = [mean(p[i]["gold"] - p[i]["base"] for p in pts) for i in range(length)]
            x = [mean(p[i]["proxy"] - p[i]["pbase"] for p in pts) for i in range(length)]
            acc = mean(s["reward_models"][n]["accuracy"] for s in have)
            ax.plot(d, g, "-o", ms=3, color=colors[n], label=f"gold, RM on {n} pairs (acc. {acc:.2f})")
            proxy_ax.plot(d, x, "--", color=colors[n], alpha=0.7)
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("d = sqrt(KL to the SFT model)")
        proxy_ax.set_ylabel("the reward model's raw score, gain (dashed)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gold (true reward) gain over the SFT model (solid)")
    axes[0].legend(fontsize=7, loc="lower right")
    plt.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def draw(results: dict, out: Path, figure: Path | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    plot(results, [out / "overoptimisation.png", *([figure] if figure else [])])
    text = report(results)
    (out / "overoptimisation.md").write_text(text + "\n")
    print(text)
    return results


# ------------------------------------------------------------------ one run's metrics file

def windows(path, window: int = 25) -> dict[str, list[float]]:
    """Window means of a ppo_metrics.jsonl: {"step": first step of each window, SCORE, TRUE,
    KL}: the score PPO maximises beside the true reward it stands in for."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    chunks = [rows[i:i + window] for i in range(0, len(rows), window)]
    out = {"step": [w[0]["step"] for w in chunks]}
    for key in (SCORE, TRUE, KL):
        out[key] = [mean(r[key] for r in w) for w in chunks]
    return out


def read_metrics(paths: list[str], window: int) -> str:
    """For each run: the true reward and the score at the first window, at the true reward's
    peak and at the last window, with the KL; then their mean and std over the runs."""
    runs = []
    for path in paths:
        c = windows(path, window)
        top = max(range(len(c[TRUE])), key=c[TRUE].__getitem__)
        runs.append({f"{name}: {label}": c[key][i] for name, i in (("start", 0), ("peak", top),
                                                                   ("end", -1))
                     for label, key in (("step", "step"), ("true reward", TRUE),
                                        ("RM score", SCORE), ("KL", KL))})
    return md_table(["", *[f"run {i}" for i in range(len(runs))], "mean ± std"],
                    [[k, *[f"{r[k]:.3f}" for r in runs], ms([r[k] for r in runs])]
                     for k in runs[0]])


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", default=None, help="seeds and ranges (default: "
                        "0-2; 0 with --smoke)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default: 2)")
    parser.add_argument("--out", default=None, help="folder of the runs and the results "
                        "(default: sweeps/overoptimisation, or sweeps/overoptimisation_smoke)")
    parser.add_argument("--figure", default=None, help="also save the plot here (default: "
                        "docs/overoptimisation.png; none with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="one seed, seconds-long runs")
    parser.add_argument("--report", metavar="JSON", default=None, help="train and measure "
                        "nothing: the page and the plot again from an overoptimisation.json")
    parser.add_argument("--metrics", nargs="+", metavar="PPO_METRICS", default=None,
                        help="only read PPO runs' ppo_metrics.jsonl files: the score against "
                        "the true reward, window by window")
    parser.add_argument("--window", type=int, default=25, help="--metrics: steps per window")
    args = parser.parse_args(argv)
    if args.metrics:
        missing = [p for p in args.metrics if not Path(p).is_file()]
        if missing:
            sys.exit(f"error: {missing[0]}: no such metrics file (train_ppo.py writes "
                     "ppo_metrics.jsonl in its --out_dir)")
        print(read_metrics(args.metrics, args.window))
        return None
    if args.report:
        try:
            results = json.loads(Path(args.report).read_text())
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"error: {args.report}: not a readable overoptimisation.json ({e})")
        return draw(results, Path(args.out or Path(args.report).parent),
                    args.figure and Path(args.figure))
    try:
        seeds = sweep.parse_seeds(args.seeds or (["0"] if args.smoke else ["0-2"]))
    except ValueError as e:
        sys.exit(f"error: {e}")
    out = Path(args.out or ("sweeps/overoptimisation_smoke" if args.smoke else
                            "sweeps/overoptimisation")).resolve()
    t0 = time.time()
    runs = train(seeds, out, args.jobs, args.smoke)
    print("measuring: best-of-N by each reward model, their accuracies, PPO's paths", flush=True)
    import torch
    results = {"smoke": args.smoke, "prompts": 16 if args.smoke else PROMPTS,
               "failed": runs["failed"], "seeds": {
                   str(s): measure_seed(out, s, args.smoke, runs["ppo_folders"]) for s in seeds}}
    results["fits"] = fits(results)
    results["claims"] = judge(results)
    results.update(date=time.strftime("%Y-%m-%d"), seconds=time.time() - t0,
                   machine=f"torch {torch.__version__}, "
                           f"{'CUDA' if torch.cuda.is_available() else 'CPU'}")
    (out / "overoptimisation.json").write_text(json.dumps(results, indent=1))
    figure = Path(args.figure) if args.figure else None if args.smoke else \
        ROOT / "docs" / "overoptimisation.png"
    return draw(results, out, figure)


if __name__ == "__main__":
    main()
