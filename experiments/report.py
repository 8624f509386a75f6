"""compare.py's report: the frontier plot (true reward against KL to the SFT model), and the
frontier, resources, method-selection and claims tables, each cell a mean ± std over seeds."""

import time

import torch

from experiments.claims import judge
from experiments.measure import BEST_OF, best_of_n_kl
from experiments.methods import DPO, GRPO, METHODS, PPO
from experiments.results import mean, middle, ms, of, resources, sft_by_seed, std


def frontier_points(result: dict) -> dict[str, list[dict]]:
    """{curve: [{label, kl: [per seed], reward: [per seed], win: [...]}]}: the methods' runs,
    then best-of-N (KL in closed form), the SFT model and the SFT control."""
    curves = {}
    for m in METHODS:
        for v in m.values:
            if v in result["runs"].get(m.name, {}):
                kl, rw, win = (list(of(result, m, v, k).values())
                               for k in ("kl_to_ref", "reward_mean", "win_rate_vs_sft"))
                curves.setdefault(m.name, []).append(
                    {"label": f"{m.knob} {v}", "kl": kl, "reward": rw, "win": win})
    bon = result["best_of_n"]
    curves["best-of-N from SFT (no training)"] = [
        {"label": f"N = {n}", "kl": [best_of_n_kl(n)] * len(bon),
         "reward": [b[str(n)] for b in bon.values()], "win": []} for n in BEST_OF]
    curves["SFT model"] = [{"label": "", "kl": [0.0] * len(result["sft"]),
                            "reward": list(sft_by_seed(result).values()), "win": []}]
    control = result["runs"].get("sft_control", {}).get("", {})
    if control:
        curves["+2000 SFT steps (same-compute control)"] = [
            {"label": "", "kl": list(result["sft_control_kl"].values()),
             "reward": [r["sft/reward_mean"] for r in control.values()], "win": []}]
    return curves


def plot(result: dict, paths: list) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 6))
    markers = "os^vDP<>hXp*"         # tab10's gray (7) is left to best-of-N
    for i, (name, points) in enumerate(frontier_points(result).items()):
        baseline = i >= len(METHODS)
        x = [mean(p["kl"]) for p in points]
        y = [mean(p["reward"]) for p in points]
        style = dict(color="gray", ls="--") if name.startswith("best-of") else \
            dict(color="black", ls="") if baseline else dict(color=plt.cm.tab10(i + (i > 6)))
        ax.errorbar(x, y, xerr=[std(p["kl"]) for p in points],
                    yerr=[std(p["reward"]) for p in points],
                    marker=markers[i % len(markers)], ms=6, capsize=2, lw=1.2, label=name,
                    **style)
        if name.startswith("best-of"):
            for p, xi, yi in zip(points, x, y):
                ax.annotate(p["label"], (xi, yi), xytext=(3, -10), textcoords="offset points",
                            fontsize=7, color="gray")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("KL(policy || SFT model), nats per answer (symlog axis)")
    ax.set_ylabel("true reward of the answers to held-out prompts")
    n = len(result["sft"])
    ax.set_title(f"True reward against KL, every method from the same SFT models "
                 f"(mean ± std over {n} seed{'s' * (n > 1)}; each curve: its KL knob)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def md_table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] +
                     ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def frontier_table(result: dict) -> str:
    rows = []
    for name, points in frontier_points(result).items():
        for p in points:
            rows.append([name, p["label"], ms(p["kl"], ".2f"), ms(p["reward"]),
                         ms(p["win"]) if p["win"] else "", len(p["reward"])])
    return md_table(["method", "knob", "KL to SFT (nats)", "true reward", "win rate vs SFT",
                     "n"], rows)


def resources_table(result: dict) -> str:
    params, res = result["trainable_params"], resources(result)
    rows = [[m.name, f"{m.knob} {res[m.name]['value']}", ms(res[m.name]["models"], ".0f"),
             f"{params[m.trainable]:,}", ms(res[m.name]["peak_mb"], ".0f"),
             ms(res[m.name]["dt"], ".3f"), f"{mean(res[m.name]['steps']):.0f}",
             ms(res[m.name]["train_seconds"], ".0f"), m.data, m.knobs] for m in METHODS]
    return md_table(["method", "run", "models in memory (measured)", "trainable parameters",
                     "peak memory, process (MiB)", "s / step (median)", "steps",
                     "training time (s)", "data it needs", "knobs"], rows)


def selection_table(result: dict) -> str:
    """The first article's method-selection table, its cells beside this project's numbers."""
    res = resources(result)
    rlhf_mb, rlhf_s = (mean(res[PPO.name][k]) for k in ("peak_mb", "train_seconds"))
    article = {  # (RLHF, DPO, GRPO), as the first article writes them
        "Training complexity": ("high (4 models)", "low (2 models)",
                                "medium (2 models + online generation)"),
        "Data requirements": ("preference pairs + prompts", "preference pairs",
                              "prompts + reward rules"),
        "Training stability": ("PPO is unstable", "stable like SFT", "fairly stable"),
        "Performance ceiling": ("high (online optimization)", "medium (offline limitations)",
                                "high (online + emergence)"),
        "GPU memory": ("100%", "40%", "60%"),
        "Training time": ("100%", "30%", "60%")}
    rows = []
    for row, cells in article.items():
        out = [row]
        for m, said in zip((PPO, DPO, GRPO), cells):
            v, r = middle(result, m), res[m.name]
            reward_at = {u: list(of(result, m, u, "reward_mean").values())
                         for u in m.values if u in result["runs"].get(m.name, {})}
            means = {u: mean(x) for u, x in reward_at.items()}
            best = max(means, key=means.get, default=None)
            here = {
                "Training complexity": f"{mean(r['models']):.0f} models, {len(m.steps)} training "
                                       f"stage{'s' * (len(m.steps) > 1)} after SFT, knobs: {m.knobs}",
                "Data requirements": m.data,
                "Training stability": f"true reward std over seeds {std(reward_at.get(v, [])):.3f} "
                                      f"({m.knob} {v}); means over {m.knob} from "
                                      f"{min(means.values(), default=float('nan')):.3f} to "
                                      f"{max(means.values(), default=float('nan')):.3f}",
                "Performance ceiling": f"best true reward {ms(reward_at.get(best, []))} "
                                       f"({m.knob} {best})",
                "GPU memory": f"{mean(r['peak_mb']) / rlhf_mb:.0%} of RLHF's peak process "
                              f"memory on the CPU ({mean(r['peak_mb']):.0f} MiB)",
                "Training time": f"{mean(r['train_seconds']) / rlhf_s:.0%} of RLHF's training "
                                 f"time ({mean(r['train_seconds']):.0f} s)"}[row]
            out.append(f"{said}; here: {here}")
        rows.append(out)
    return md_table(["", "RLHF (reward model + PPO)", "DPO (+ NLL)", "GRPO"], rows)


def report(result: dict, seeds: list[int], seconds: float, smoke: bool) -> str:
    n = len(result["sft"])
    failed = f"\n\nFailed runs: {', '.join(result['failed'])}." if result["failed"] else ""
    warning = ["**A --smoke report: every number below comes from seconds-long runs of tiny "
               "models, so the verdicts mean nothing; they show that the report is whole.**"] \
        if smoke else []
    return "\n\n".join([
        f"# compare.py: every method on one task (seeds {', '.join(map(str, seeds))}; "
        f"n = {n} per cell unless a cell says otherwise)", *warning,
        f"{time.strftime('%Y-%m-%d')}, {seconds:.0f} s wall for this call, torch "
        f"{torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU'}.{failed}",
        "## The frontier (the plot's numbers)", frontier_table(result),
        "## Resources (each method at its middle knob value)", resources_table(result),
        "## The first article's method-selection table, measured", selection_table(result),
        "## The articles' claims", md_table(["claim", "source", "runs", "measured (mean ± std)",
                                             "verdict"], [list(c) for c in judge(result)])])
