"""Reward over-optimisation (Gao et al. 2022) in PPO's metrics files: the reward model's
score against the true reward of the same rollouts, step by step.

    python experiments/tools/overoptimisation.py out/ppo_kl0/ppo_metrics.jsonl   # after the README's run
    python experiments/tools/overoptimisation.py sweeps/compare/seed*/train_ppo_kl_coef_0_max_steps_400/ppo_metrics.jsonl

For each run (one ppo_metrics.jsonl each), in windows of --window steps: the true reward
at the start, at its peak and at the end, the reward model's score (objective/scores) at
the same windows, and the KL; then their mean +- std over the runs. The score is what
PPO maximises; the true reward is what it stands in for. Standard library only.
"""

import argparse
import json
import statistics
from pathlib import Path

SCORE, TRUE, KL = "objective/scores", "objective/true_reward", "objective/kl"


def curve(path, window: int = 25) -> dict[str, list[float]]:
    """Window means of a metrics file: {"step": first step of each window, SCORE, TRUE, KL}."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    windows = [rows[i:i + window] for i in range(0, len(rows), window)]
    out = {"step": [w[0]["step"] for w in windows]}
    for key in (SCORE, TRUE, KL):
        out[key] = [statistics.fmean(r[key] for r in w) for w in windows]
    return out


def summary(c: dict) -> dict[str, float]:
    """The true reward and the score at the first window, the true reward's peak, and the
    last window."""
    peak = max(range(len(c[TRUE])), key=c[TRUE].__getitem__)
    out = {}
    for name, i in (("start", 0), ("peak", peak), ("end", -1)):
        out[f"{name}: step"] = float(c["step"][i])
        out[f"{name}: true reward"] = c[TRUE][i]
        out[f"{name}: RM score"] = c[SCORE][i]
        out[f"{name}: KL"] = c[KL][i]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", nargs="+", help="ppo_metrics.jsonl files, one per run")
    parser.add_argument("--window", type=int, default=25, help="steps per window (default: 25)")
    args = parser.parse_args()
    runs = [summary(curve(p, args.window)) for p in args.metrics]
    print(f"{'':<22}" + "".join(f"{'run ' + str(i):>10}" for i in range(len(runs))) +
          f"{'mean':>10}{'std':>8}")
    for key in runs[0]:
        values = [r[key] for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{key:<22}" + "".join(f"{v:>10.3f}" for v in values) +
              f"{statistics.fmean(values):>10.3f}{std:>8.3f}")


if __name__ == "__main__":
    main()
