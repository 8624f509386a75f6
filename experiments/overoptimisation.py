"""The reward model as RLHF's bottleneck, measured: reward models of three qualities, the
true reward ("gold") each lets best-of-N and PPO reach, and how each is over-optimised
(Gao, Schulman and Hilton 2022, "Scaling Laws for Reward Model Overoptimization").

    python experiments/overoptimisation.py                 # seeds 0-2, 2 runs at a time
    python experiments/overoptimisation.py --smoke         # one seed, seconds-long runs
    python experiments/overoptimisation.py --report sweeps/overoptimisation/overoptimisation.json
    python experiments/overoptimisation.py --metrics out/ppo_kl0/ppo_metrics.jsonl   # one run

The toy world's true reward is the gold, so every gold number is exact. Per seed, from its SFT
model (sweep.py's planner: each seed's SFT model trained once, finished runs reused):
- Reward models of three qualities: train_rm.py on RM_PROMPTS pairs (125, 500, 4000 prompts).
  Each one's accuracy: on 2048 held-out prompts, two SFT answers each, the share of pairs
  with different true rewards whose better answer it scores higher (ties in score: half).
- Best-of-N ranked by each reward model, exact (ceiling.best_of_by), from the SFT model's 64
  answers to each of 256 held-out prompts (compare.py's ceiling's answers), N = 1 ... 64:
  the gold of the pick, the reward model's own score of it, the KL to the SFT model.
- PPO on each reward model with a weak leash (--kl_coef 0 and 0.01), 400 steps, its path
  every 25 (--eval_every): the gold, the reward model's raw score and the share of answers
  that never end (the penalty PPO takes, reported apart), the KL.
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

import numpy as np

from experiments import ceiling, sweep
from experiments.claims import judge_seeds, outcome
from experiments.report import md_table
from experiments.results import mean, ms

ROOT = Path(__file__).resolve().parents[1]
RM_PROMPTS = ("125", "500", "4000")        # pairs each reward model learns from: its quality
KL_COEFS = ("0", "0.01")                    # a weak leash: none, and a small one
STEPS, EVERY = 400, 25                      # PPO's steps, and its path's spacing
BEST_OF = (1, 2, 4, 8, 16, 32, 64)
SAMPLES, PROMPTS, PAIR_PROMPTS = 64, 256, 2048
SCORE, TRUE, KL = "objective/scores", "objective/true_reward", "objective/kl"


# ------------------------------------------------------------------ what runs

def rm_chain(n: str, smoke: bool) -> list[list[str]]:
    return [["train_sft.py", *smoked(smoke)], ["train_rm.py", "--num_prompts", n, *smoked(smoke)]]


def ppo_chain(n: str, kl_coef: str, smoke: bool) -> list[list[str]]:
    steps = ["--max_steps", "4", "--eval_every", "2"] if smoke else \
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

def measure_seed(out: Path, seed: int, smoke: bool, ppo_folders: dict) -> dict:
    """Per seed: the SFT answers' gold, the ceiling, best-of-N by the gold and by each reward
    model, each reward model's accuracy, and PPO's paths."""
    from data.world import eval_prompts, reward
    from evaluation import generate
    from experiments.measure import answers, rm_scores
    from model import ScoreModel, load_checkpoint
    folder = out / f"seed{seed}"
    sft, _ = load_checkpoint(folder / "sft.pt")
    prompts = eval_prompts(16 if smoke else PROMPTS)
    M = 8 if smoke else SAMPLES
    gold, _, tokens = answers(sft, prompts, M, seed + 7)            # (prompts, M), as compare's
    pair_prompts = eval_prompts(32 if smoke else PAIR_PROMPTS)
    texts2, tokens2 = generate(sft, pair_prompts, num_samples=2, seed=seed + 11)
    r2 = np.array([reward(pair_prompts[i // 2], t) for i, t in enumerate(texts2)]).reshape(-1, 2)
    differ = r2[:, 0] != r2[:, 1]
    ns = [n for n in BEST_OF if n <= M]
    out_seed = {"sft_gold": float(gold.mean()), "answer_std": float(gold.std()),
                "ceiling": ceiling.curve(gold),
                "best_of_gold": [dict(zip(("n", "gold", "kl"), (n, *ceiling.best_of(gold, n))))
                                 for n in ns], "reward_models": {}}
    for n in RM_PROMPTS:
        rm = load_checkpoint(folder / rm_folder(n, smoke) / "rm.pt", cls=ScoreModel)[0].eval()
        proxy = rm_scores(rm, prompts, tokens, M)                               # (prompts, M)
        s2 = rm_scores(rm, pair_prompts, tokens2, 2)
        right = np.where(s2[:, 0] == s2[:, 1], 0.5,
                         ((s2[:, 0] > s2[:, 1]) == (r2[:, 0] > r2[:, 1])).astype(float))
        out_seed["reward_models"][n] = {
            "accuracy": float(right[differ].mean()), "pairs": int(differ.sum()),
            "sft_proxy": float(proxy.mean()), "proxy_std": float(proxy.std()),
            "best_of": [{"n": k, "gold": g, "kl": kl, "proxy": ceiling.best_of_by(proxy, proxy, k)[0]}
                        for k in ns for g, kl in [ceiling.best_of_by(proxy, gold, k)]],
            "ppo": {k: read_path(Path(ppo_folders[f"{n}/{k}"][str(seed)]) / "ppo_path.jsonl")
                    for k in KL_COEFS if str(seed) in ppo_folders.get(f"{n}/{k}", {})}}
    return out_seed


def read_path(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------ fits, peaks, claims

def peak(points: list[dict], key: str = "gold") -> dict:
    """The point of highest gold (the data's peak, not a fit's)."""
    return max(points, key=lambda p: p[key]) if points else {}


def ppo_points(per_seed: dict, n: str, k: str) -> list[dict]:
    """A PPO run's path as points: {kl, gold, proxy, unfinished}."""
    return [{"step": p["step"], "kl": p["kl"], "gold": p["reward"], "proxy": p.get("rm_score"),
             "unfinished": p.get("unfinished")} for p in per_seed["reward_models"][n]["ppo"].get(k, [])]


def fits(results: dict) -> dict:
    """{n: {"bon": (alpha, beta, rms residual), "rl": ...}}: Gao et al.'s forms on the gold's
    gain over the SFT model against d = sqrt(KL), every seed's points together (KL < 0, an
    estimate's error near the start, read as 0)."""
    out = {}
    for n in RM_PROMPTS:
        for kind in ("bon", "rl"):
            d, r = [0.0], [0.0]
            for s in results["seeds"].values():
                pts = s["reward_models"][n]["best_of"] if kind == "bon" else \
                    [p for k in KL_COEFS for p in ppo_points(s, n, k)]
                d += [math.sqrt(max(p["kl"], 0.0)) for p in pts]
                r += [p["gold"] - s["sft_gold"] for p in pts]
            if len(d) < 3:
                continue
            alpha, beta = ceiling.fit_gao(d, r, kind)
            shape = np.array(d) ** 2 if kind == "bon" else \
                np.array(d) * np.log(np.where(np.array(d) > 0, d, 1.0))
            residual = float(np.sqrt(np.mean((alpha * np.array(d) - beta * shape - r) ** 2)))
            out.setdefault(n, {})[kind] = {"alpha": alpha, "beta": beta, "rms": residual,
                                           "points": len(d)}
    return out


def noise_delta(s: dict, n_prompts: int) -> float:
    """Twice the standard error of a difference of two path points, each a mean of one
    answer's gold over n_prompts prompts (the answers' std as the SFT model's)."""
    return 2 * math.sqrt(2) * s["answer_std"] / math.sqrt(n_prompts)


def judge(results: dict) -> list[dict]:
    """The first article's "The Reward Model is a bottleneck: RM quality directly caps the
    alignment ceiling, and it's easy to exploit", as three claims judged seed by seed:
    - caps (best-of-N, PPO): with the reward models in order of held-out accuracy, each step
      up raises the gold's peak by more than delta (beyond), each lowers it by more
      (reversed), every step within delta (within); steps that disagree: "not monotone".
    - exploit: PPO without a leash (kl_coef 0), past its gold's peak, the reward model's
      score rises while the gold falls, each by more than its delta, on every reward model.
    delta: best-of-N's peaks are exact on the SFT answers (the stated 0.02); PPO's are path
    points, and delta is twice the standard error of a difference of two (noise_delta)."""
    claims, n_prompts = [], results["prompts"]
    for kind in ("bon", "ppo"):
        outcomes, measured = {}, []
        for seed, s in results["seeds"].items():
            order = sorted(RM_PROMPTS, key=lambda n: s["reward_models"][n]["accuracy"])
            peaks = [peak(s["reward_models"][n]["best_of"] if kind == "bon" else
                          [p for k in KL_COEFS for p in ppo_points(s, n, k)]).get("gold", math.nan)
                     for n in order]
            delta = 0.02 if kind == "bon" else max(0.02, noise_delta(s, n_prompts))
            steps = [outcome(b - a, delta) for a, b in zip(peaks, peaks[1:])]
            outcomes[seed] = None if None in steps else steps[0] if len(set(steps)) == 1 \
                else "not monotone"
            measured.append(f"seed {seed}: " + ", ".join(
                f"{n} pairs (accuracy {s['reward_models'][n]['accuracy']:.3f}) {g:.3f}"
                for n, g in zip(order, peaks)) + f" (delta {delta:.3f})")
        claims.append({"claim": "RM quality directly caps the alignment ceiling: the gold's peak "
                                f"rises with the reward model's accuracy ({'best-of-N' if kind == 'bon' else 'PPO'})",
                       "measured": "; ".join(measured), "verdict": judge_seeds(outcomes)})
    outcomes, measured = {}, []
    for seed, s in results["seeds"].items():
        per_rm = []
        for n in RM_PROMPTS:
            pts = ppo_points(s, n, "0")
            if not pts or pts[-1]["proxy"] is None:
                per_rm.append(None)
                continue
            top, last = peak(pts), pts[-1]
            gold_fell = outcome(top["gold"] - last["gold"], max(0.02, noise_delta(s, n_prompts)))
            proxy_rose = outcome(last["proxy"] - top["proxy"],
                                 2 * math.sqrt(2) * s["reward_models"][n]["proxy_std"] /
                                 math.sqrt(n_prompts))
            per_rm.append("beyond" if gold_fell == proxy_rose == "beyond" else
                          "within" if "beyond" not in (gold_fell, proxy_rose) else "partly")
            measured.append(f"seed {seed}, {n} pairs: gold {top['gold']:.3f} at step "
                            f"{top['step']} -> {last['gold']:.3f}, score {top['proxy']:.3f} -> "
                            f"{last['proxy']:.3f}")
        outcomes[seed] = None if None in per_rm else per_rm[0] if len(set(per_rm)) == 1 \
            else "on some reward models"
    claims.append({"claim": "and it's easy to exploit: PPO without a leash, past the gold's "
                            "peak, raises the reward model's score while the gold falls",
                   "measured": "; ".join(measured), "verdict": judge_seeds(outcomes)})
    return claims


# ------------------------------------------------------------------ the page and the picture

def report(results: dict) -> str:
    seeds = results["seeds"]
    rows = []
    for n in RM_PROMPTS:
        acc = [s["reward_models"][n]["accuracy"] for s in seeds.values()]
        bon = [peak(s["reward_models"][n]["best_of"]) for s in seeds.values()]
        ppo = [peak([p for k in KL_COEFS for p in ppo_points(s, n, k)]) for s in seeds.values()]
        share = [p["gold"] / ceiling_at(s, p["kl"]) for p, s in zip(ppo, seeds.values()) if p]
        rows.append([n, ms(acc), ms([b["gold"] for b in bon]), ms([b["n"] for b in bon], ".0f"),
                     ms([p.get("gold", math.nan) for p in ppo]),
                     ms([math.sqrt(max(p.get("kl", math.nan), 0.0)) for p in ppo], ".2f"),
                     ms(share, ".0%")])
    fit_rows = [[n, kind, f"{f['alpha']:.3f}", f"{f['beta']:.3f}" + (" (no peak)" if f["beta"] <= 0
                                                                    else ""), f"{f['rms']:.3f}",
                 f["points"]] for n, by in results["fits"].items() for kind, f in by.items()]
    gold_bon = [[b["n"], ms([s["best_of_gold"][i]["gold"] for s in seeds.values()]),
                 ms([s["best_of_gold"][i]["kl"] for s in seeds.values()], ".2f")]
                for i, b in enumerate(next(iter(seeds.values()))["best_of_gold"])]
    return "\n\n".join([
        f"# Reward over-optimisation (seeds {', '.join(seeds)}; n = {len(seeds)})",
        *(["**A --smoke report: tiny models, seconds-long runs; the numbers mean nothing.**"]
          if results["smoke"] else []),
        f"{results['date']}, {results['seconds']:.0f} s wall, {results['machine']}." +
        (f" Failed: {', '.join(results['failed'])}." if results["failed"] else ""),
        "## Reward models and the gold each lets a policy reach",
        "Accuracy on held-out SFT answer pairs labelled by the true reward; the gold's peak "
        "(the true reward, read from the data) under best-of-N ranked by the reward model "
        "(exact, and at which N) and along PPO's paths (kl_coef 0 and 0.01), where its d = "
        "sqrt(KL), and that peak as a share of the ceiling pi*'s reward at the same KL.",
        md_table(["pairs the RM learned from", "held-out accuracy", "best-of-N gold peak",
                  "at N", "PPO gold peak", "at d", "of the ceiling there"], rows),
        "## Best-of-N by the true reward itself (the gold ranking its own samples)",
        md_table(["N", "gold", "KL"], gold_bon),
        "## Gao et al.'s forms, fitted",
        "On the gold's gain over the SFT model against d = sqrt(KL), every seed's points "
        "together: best-of-N d (alpha - beta d), PPO d (alpha - beta log d); rms: the fit's "
        "residual. A beta of 0 or less has no peak in range.",
        md_table(["RM pairs", "form", "alpha", "beta", "rms", "points"], fit_rows),
        "## The article's claims",
        md_table(["claim", "measured", "verdict"],
                 [[c["claim"], c["measured"], c["verdict"]] for c in results["claims"]])])


def ceiling_at(s: dict, kl: float) -> float:
    """The ceiling's reward at a KL, interpolated on the seed's curve (its betas)."""
    pts = sorted((p["kl"], p["reward"]) for p in s["ceiling"])
    return float(np.interp(max(kl, 0.0), [k for k, _ in pts], [r for _, r in pts]))


def plot(results: dict, paths: list[Path]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    seeds = list(results["seeds"].values())
    colors = dict(zip(RM_PROMPTS, ("tab:red", "tab:orange", "tab:green")))
    for ax, kind in zip(axes, ("best-of-N, ranked by the reward model (exact)",
                               "PPO on the reward model, kl_coef 0 (mean over seeds by step)")):
        curve = seeds[0]["ceiling"]
        ax.plot([math.sqrt(p["kl"]) for p in curve],
                [mean(s["ceiling"][i]["reward"] - s["sft_gold"] for s in seeds)
                 for i in range(len(curve))], "k-", lw=2, label="the ceiling pi* (true reward)")
        proxy_ax = ax.twinx()
        for n in RM_PROMPTS:
            if kind.startswith("best"):
                pts = [[p for p in s["reward_models"][n]["best_of"]] for s in seeds]
            else:                                   # from the SFT model's point: 0, 0
                pts = [[{"kl": 0.0, "gold": s["sft_gold"],
                         "proxy": s["reward_models"][n]["sft_proxy"]}, *ppo_points(s, n, "0")]
                       for s in seeds]
            if not pts:
                continue
            length = min(map(len, pts))
            d = [mean(math.sqrt(max(p[i]["kl"], 0.0)) for p in pts) for i in range(length)]
            g = [mean(p[i]["gold"] - s["sft_gold"] for p, s in zip(pts, seeds)) for i in range(length)]
            x = [mean((p[i]["proxy"] or 0.0) - s["reward_models"][n]["sft_proxy"]
                      for p, s in zip(pts, seeds)) for i in range(length)]
            acc = mean(s["reward_models"][n]["accuracy"] for s in seeds)
            ax.plot(d, g, "-o", ms=3, color=colors[n], label=f"gold, RM on {n} pairs (acc. {acc:.2f})")
            proxy_ax.plot(d, x, "--", color=colors[n], alpha=0.7)
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("d = sqrt(KL to the SFT model)")
        proxy_ax.set_ylabel("the reward model's score, gain (dashed)", fontsize=8)
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
