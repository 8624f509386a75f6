"""compare.py's report: the frontier plot (true reward against KL to the SFT model), and the
frontier, resources, method-selection and claims tables, each cell a mean ± std over seeds."""

import math

from experiments.claims import checks, judge
from experiments.ceiling import best_of_n_bound
from experiments.measure import BEST_OF
from experiments.methods import METHODS, PATHS
from experiments.results import Results, distance, mean, middle, ms, ratio, resources, std


def frontier_points(res: Results) -> dict[str, list[dict]]:
    """{curve: [{label, kl: [per seed], reward: [per seed], win: [...]}]}: the methods' runs
    (each curve named by its title), then exact best-of-N, the SFT model and the SFT control."""
    curves = {}
    for m in METHODS.values():
        for v in m.values:
            if v in res.knobs_run(m.name):
                kl, rw, win = (list(res.column(m.name, v, k).values())
                               for k in ("kl_to_ref", "reward_mean", "win_rate_vs_sft"))
                curves.setdefault(m.title, []).append(
                    {"label": f"{m.knob} {v}", "kl": kl, "reward": rw, "win": win})
    bon = res.best_of_n.values()
    curves[BEST_OF_N] = [{"label": f"N = {n}", "kl": [b[str(n)]["kl"] for b in bon],
                          "reward": [b[str(n)]["reward"] for b in bon], "win": []}
                         for n in BEST_OF]
    curves["SFT model"] = [{"label": "", "kl": [0.0] * len(res.sft),
                            "reward": list(res.sft_column().values()), "win": []}]
    control = res.runs_of("sft_control")
    if control:
        curves["+2000 SFT steps (same-compute control)"] = [
            {"label": "", "kl": list(res.sft_control_kl.values()),
             "reward": [r.get("reward_mean") for r in control.values()], "win": []}]
    return curves


BEST_OF_N = "best-of-N from SFT (exact, with ties; no training)"


def ceiling_curve(res: Results) -> tuple[list[float], list[float], list[float]]:
    """The ceiling averaged over the seeds at each beta: (KL, reward, the reward's spread: the
    larger of the seeds' std and the bootstrap's over prompts)."""
    curves = list(res.ceiling.values())
    kl = [mean(c[i]["kl"] for c in curves) for i in range(len(curves[0]))]
    rw = [mean(c[i]["reward"] for c in curves) for i in range(len(curves[0]))]
    sd = [max(std([c[i]["reward"] for c in curves]), mean(c[i]["reward_std"] for c in curves))
          for i in range(len(curves[0]))]
    return kl, rw, sd


def plot(res: Results, paths: list) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 7))
    kl, rw, sd = ceiling_curve(res)
    ax.plot(kl, rw, color="black", lw=2, label="ceiling: the KL-regularised optimum pi* "
            "(from 64 SFT answers a prompt)", zorder=1)
    ax.fill_between(kl, [r - s for r, s in zip(rw, sd)], [r + s for r, s in zip(rw, sd)],
                    color="black", alpha=0.12, lw=0)
    bon = frontier_points(res)[BEST_OF_N]
    ax.plot([best_of_n_bound(n) for n in BEST_OF], [mean(p["reward"]) for p in bon], ":",
            color="gray", lw=1, label="best-of-N at the tie-free bound log N - (N-1)/N")
    palette = [c for i, c in enumerate(plt.cm.tab20(range(20))) if i not in (14, 15)]  # no gray
    colors = dict(zip(METHODS, palette))                            # a method's color
    markers = dict(zip(METHODS, "os^vDP<>hXp*dH1234"))
    titles = {m.title: name for name, m in METHODS.items()}
    shown = []                                       # the KLs drawn: the axis must hold them
    for name, pts in frontier_points(res).items():
        x, y = [mean(p["kl"]) for p in pts], [mean(p["reward"]) for p in pts]
        finite = [k for k, r in zip(x, y) if math.isfinite(k) and math.isfinite(r)]
        if not finite:                               # nothing to draw: no legend entry either
            continue
        shown += finite
        m = titles.get(name)
        style = dict(color="gray", ls="--", marker="s") if name == BEST_OF_N else \
            dict(color="black", ls="", marker="*" if name == "SFT model" else "P", ms=9) \
            if m is None else dict(color=colors[m], marker=markers[m])
        ax.errorbar(x, y, xerr=[std(p["kl"]) for p in pts], yerr=[std(p["reward"]) for p in pts],
                    capsize=2, lw=1.2, label=name, **{"ms": 6, **style})
    draw_paths(ax, res, colors)
    draw_promises(ax, res, colors)
    ax.set_xscale("symlog", linthresh=1)
    # a KL estimated from a few hundred answers can dip below 0 (frontier_table says why)
    ax.set_xlim(left=min(-0.05, 1.2 * min(shown, default=0.0)))
    ax.set_xlabel("KL(policy || SFT model), nats per answer (symlog axis)")
    ax.set_ylabel("true reward of the answers to held-out prompts")
    n = len(res.sft)
    ax.set_title(f"True reward against KL, every method from the same SFT models, under the "
                 f"ceiling pi* (mean ± std over {n} seed{'s' * (n > 1)}; each curve: its KL "
                 "knob; thin lines: training paths; hollow: where the objective is minimised)",
                 fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


REGRET_RUN = ("rloo", "0.04")      # the run the regret figure draws: E[r] - beta KL, beta 0.04


def plot_regret(res: Results, paths: list) -> None:
    """The regret and the reward gap of one run, drawn on its seed's ceiling (the first
    seed's): the line of slope beta touching the ceiling at pi*_beta, the run's vertical
    distance to that line (its objective regret, J*(beta) - (R - beta KL)) and to the curve
    (its reward gap, R*(KL) - R)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    name, v = REGRET_RUN
    seed = next((s for s in sorted(res.ceiling, key=int)
                 if v in res.distance.get(s, {}).get(name, {})), None)
    if seed is None:
        return
    run = res.runs_of(name, v)[seed]
    kl, r = run.get("kl_to_ref"), run.get("reward_mean")
    beta = float(v)
    star_r, star_kl = res.promised_by_seed[seed][name][v]              # pi*_beta, on the curve
    d = res.distance[seed][name][v]
    curve = res.ceiling[seed]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot([p["kl"] for p in curve], [p["reward"] for p in curve], "k-", lw=2,
            label="the ceiling R*(KL) (this seed's)")
    xs = [0.0, max(kl, star_kl) * 1.4]
    ax.plot(xs, [star_r + beta * (x - star_kl) for x in xs], "--", color="tab:blue",
            label=f"slope beta = {beta} through pi*_beta: R - beta KL = J*(beta)")
    ax.plot([star_kl], [star_r], "o", mfc="none", mec="tab:blue", ms=9, label="pi*_beta")
    ax.plot([kl], [r], "o", color="tab:red", label=f"the run: {METHODS[name].title}, "
            f"seed {seed}")
    line, step = star_r + beta * (kl - star_kl), 0.015 * xs[1]
    ax.annotate("", xy=(kl + step, r), xytext=(kl + step, line),
                arrowprops=dict(arrowstyle="<->", color="tab:blue"))
    ax.text(kl + 2 * step, (r + line) / 2, f"regret {d['regret']:.3f}", color="tab:blue",
            fontsize=8)
    ax.annotate("", xy=(kl, r), xytext=(kl, r + d["gap"]),
                arrowprops=dict(arrowstyle="<->", color="black"))
    ax.text(kl + 2 * step, r + d["gap"] / 4, f"gap {d['gap']:.3f}", fontsize=8)
    ax.set_xlim(0, xs[1])
    ax.set_ylim(min(r, star_r) - 0.06, max(p["reward"] for p in curve) + 0.02)
    ax.set_xlabel("KL(policy || SFT model), nats")
    ax.set_ylabel("true reward")
    ax.set_title("Objective regret: vertical distance to the line; reward gap: to the curve",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def draw_paths(ax, res: Results, colors) -> None:
    """Each PATHS method's middle run, checkpoint by checkpoint (the DPO paper's Figure 2):
    the SFT model's point, then the mean over seeds of each measured step."""
    for m in METHODS.values():
        if m.name not in PATHS:
            continue
        runs = res.runs_of(m.name, m.values[1]).values()
        steps = sorted({p["step"] for r in runs for p in r.path})
        at_step = [[p for r in runs for p in r.path if p["step"] == s] for s in steps]
        xs = [0.0] + [mean(p["kl"] for p in pts) for pts in at_step]
        ys = [mean(res.sft_column().values())] + [mean(p["reward"] for p in pts)
                                                  for pts in at_step]
        ax.plot(xs, ys, "-", color=colors[m.name], lw=0.7, alpha=0.8)


def draw_promises(ax, res: Results, colors) -> None:
    """Where a method's own objective is minimised at each knob value (hollow, in the
    method's color), an arrow from there to where training landed."""
    for name, promised in res.promised.items():
        for v, p in promised.items():
            reached = [mean(res.column(name, v, k).values()) for k in ("kl_to_ref", "reward_mean")]
            ax.plot([p["kl"]], [p["reward"]], "o", mfc="none", mec=colors[name], mew=1.5, ms=9)
            ax.annotate("", xy=reached, xytext=(p["kl"], p["reward"]),
                        arrowprops=dict(arrowstyle="->", color=colors[name], lw=0.8, alpha=0.7))


def ceiling_table(res: Results) -> str:
    """The ceiling's points (mean ± std over seeds; the bootstrap's spread over prompts), and
    how far doubling M moved it."""
    check = res.ceiling_check
    curves = list(res.ceiling.values())
    rows = [[c0["beta"], ms([c[i]["kl"] for c in curves], ".2f"),
             ms([c[i]["reward"] for c in curves]),
             f"{mean(c[i]['reward_std'] for c in curves):.3f}"] for i, c0 in enumerate(curves[0])]
    note = (f"From {check.get('M')} SFT answers a prompt; {check.get('doubled')} answers moved the "
            f"reward by at most {check.get('max_reward_change', float('nan')):.4f} and J*(beta), "
            f"the regret's, by at most {check.get('max_value_change', float('nan')):.4f} at beta "
            "0.01 and up (first seed).")
    return note + "\n\n" + md_table(["beta", "KL (nats)", "true reward",
                                      "bootstrap std over prompts"], rows)


def md_table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] +
                     ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def frontier_table(res: Results) -> str:
    """Every point of the plot, and best-of-N's tie-free KL bound beside its exact KL."""
    rows = []
    for name, pts in frontier_points(res).items():
        for p in pts:
            bound = f" (tie-free bound {best_of_n_bound(int(p['label'][4:])):.2f})" \
                if name == BEST_OF_N else ""
            rows.append([name, p["label"], ms(p["kl"], ".2f") + bound, ms(p["reward"]),
                         ms(p["win"]) if p["win"] else "", len(p["reward"])])
    negative = [mean(p["kl"]) for pts in frontier_points(res).values() for p in pts
                if mean(p["kl"]) < 0]
    note = (f"\n\nA KL below 0 (here down to {min(negative):.2f}) is an estimate: the mean "
            "over a few hundred sampled answers of log pi - log pi_ref, for a policy that has "
            "barely moved from the SFT model. The KL itself is never below 0; the estimate's "
            "error is about that size.") if negative else ""
    return md_table(["method", "knob", "KL to SFT (nats)", "true reward", "win rate vs SFT",
                     "n"], rows) + note


def promised_table(res: Results) -> str:
    """Where each objective is minimised (the derivation) against where training landed."""
    rows = []
    for name, promised in res.promised.items():
        m = METHODS[name]
        for v, p in promised.items():
            rows.append([m.title, f"{m.knob} {v}", f"{p['kl']:.2f} ± {p['kl_std']:.2f}",
                         f"{p['reward']:.3f} ± {p['reward_std']:.3f}",
                         ms(res.column(name, v, "kl_to_ref").values(), ".2f"),
                         ms(res.column(name, v, "reward_mean").values()),
                         ms(distance(res, m, v, "regret"))])
    return ("The paper's DPO loss on Bradley-Terry labels at T = 0.1 is minimised by pi ∝ pi_ref "
            "exp(r / (T beta)), the ceiling at beta' = T beta; PPO's objective by pi ∝ pi_ref "
            "exp(RM score / kl_coef), the same SFT answers weighted by the reward model's "
            "scores and read off on the true reward; the objective E[r] - beta KL(pi || pi_ref) "
            "on the true reward (RLOO, Dr. GRPO with the KL in the reward, PPO on the true "
            "reward, whose answers that never end lose 1) by the ceiling at beta. GRPO has no "
            "promised point: its k3 term in the loss follows the gradient of KL(pi_ref || pi) "
            "on one token, and on longer answers the gradient of no objective; with the KL in "
            "the reward its std scaling divides each group by its own spread, so no one "
            "objective is maximised, though pi* is still where its update is zero "
            "(train_grpo.py's docstring). Its distance from the ceiling is in the resources "
            "table.\n\n"
            "The objective regret, J*(beta) - (S - beta KL), is how far a run falls short of "
            "the objective it names, in its score's units (the true reward; PPO on its reward "
            "model: the RM's score, less 1 for an answer that never ends), at its own beta "
            "(T beta for the paper's DPO). J*(beta) = beta log E_ref[exp(s / beta)] is the "
            "objective's value at pi*. The regret is 0 on the ceiling at pi*_beta and is the "
            "run's vertical distance to the line of slope beta that touches the ceiling there; "
            "where the score is the true reward, the reward gap is its distance to the curve, "
            "never more than the regret (regret.png draws one run's)."
            "\n\n"
            + md_table(["method", "knob", "promised KL", "promised true reward", "reached KL",
                        "reached true reward", "objective regret"], rows))


def leash_table(res: Results) -> str:
    """The 2 x 2 of GRPO on the judge's reward: the KL in the loss or in the reward, the
    advantage scaled by the group's std or not, at each beta: KL and reward gap."""
    cells = [("grpo_judge", "loss", "group std"), ("grpo_judge_unscaled", "loss", "none"),
             ("grpo_kl_reward", "reward", "group std"),
             ("grpo_kl_reward_unscaled", "reward", "none")]
    rows = [[f"beta {v}", f"the {where}", scale,
             ms(res.column(name, v, "kl_to_ref").values(), ".2f"),
             ms(res.column(name, v, "reward_mean").values()),
             ms(distance(res, METHODS[name], v, "gap"))]
            for v in METHODS["grpo_judge"].values for name, where, scale in cells]
    return ("One thing changes between two cells of a row pair: where the KL goes, or whether "
            "the advantage is divided by the group's std (--scale_rewards none). The claims "
            "below judge each at beta 0.04, paired by seed; tests/test_kl_bandit.py and "
            "notebook 03 follow each cell to its fixed point on a bandit.\n\n" +
            md_table(["beta", "KL in", "scaling", "KL to SFT (nats)", "true reward",
                      "reward gap"], rows))


def resources_table(res: Results) -> str:
    params, used = res.trainable_params, resources(res, METHODS.values())
    rows = []
    for m in METHODS.values():
        r, v = used[m.name], used[m.name]["value"]
        rows.append([m.title, f"{m.knob} {v}", ms(r["models"], ".0f"), f"{params[m.trainable]:,}",
                     ms(r["peak_mb"], ".0f"), ms(r["dt"], ".3f"), f"{mean(r['steps']):.0f}",
                     ms(r["train_seconds"], ".0f"), ms(distance(res, m, v, "gap")),
                     ms(distance(res, m, v, "efficiency"), ".0%"), m.data, m.knobs])
    return md_table(["method", "run", "models in memory (measured)", "trainable parameters",
                     "peak memory, process (MiB)", "s / step (median)", "steps",
                     "training time (s)", "reward gap to the ceiling", "KL efficiency",
                     "data it needs", "knobs"], rows) + (
        "\n\nTraining time: from loading the models to the last step, less the time spent "
        "building the data from the SFT model's answers (kept beside it and shared by every "
        "run from it: data, counted in no method's training) and measuring --eval_every's "
        "path. A KL efficiency has no value for a run whose true reward is above the most the "
        "ceiling's estimate reaches (its error); a mean over fewer seeds says so, as "
        "(n = 2 of 3).")


def distance_sentences(res: Results) -> str:
    """A sentence per method on how near the ceiling it came, at the knob value where its KL
    efficiency was highest; then which method came nearest at a true reward of 0.95 or more."""
    lines, near = [], []
    for m in METHODS.values():
        by_value = {v: (distance(res, m, v, "efficiency"), distance(res, m, v, "gap"))
                    for v in m.values if distance(res, m, v, "gap")}
        if not by_value:
            continue
        v = max(by_value, key=lambda u: mean(by_value[u][0]))
        eff, gap = by_value[v]
        rw, kl = (mean(res.column(m.name, v, k).values()) for k in ("reward_mean", "kl_to_ref"))
        lines.append(f"- {m.title}, {m.knob} {v}: true reward {rw:.3f} at {kl:.2f} nats; the "
                     f"optimum reaches {rw + mean(gap):.3f} at that KL (gap {ms(gap)}) and "
                     f"needs {mean(eff):.0%} of the KL for this reward (KL efficiency "
                     f"{ms(eff, '.0%')}).")
        near += [(m, u) for u in m.values
                 if mean(res.column(m.name, u, "reward_mean").values()) >= 0.95]
    if not near:
        return "\n".join(lines + ["\nNo trained method reached a true reward of 0.95."])
    gap = min(near, key=lambda p: mean(distance(res, *p, "gap")))
    eff = max(near, key=lambda p: mean(distance(res, *p, "efficiency")))
    lines.append("\nNearest the ceiling among the runs with a true reward of 0.95 or more: by "
                 f"the reward gap, {gap[0].title} ({gap[0].knob} {gap[1]}: "
                 f"{ms(distance(res, *gap, 'gap'))}); by KL efficiency, {eff[0].title} "
                 f"({eff[0].knob} {eff[1]}: {ms(distance(res, *eff, 'efficiency'), '.0%')}).")
    return "\n".join(lines)


def memory_table(res: Results) -> str:
    mb = res.memory
    rlhf = mean(mb.get("RLHF", {}).values())
    return md_table(["method", "memory the process added (MiB)", "of RLHF's", "n"],
                    [[name, ms(v.values(), ".0f"), f"{ratio(mean(v.values()), rlhf):.0%}", len(v)]
                     for name, v in mb.items()])


def selection_table(res: Results) -> str:
    """The first article's method-selection table, its cells beside this project's numbers."""
    ppo, dpo, grpo = (METHODS[k] for k in ("ppo", "dpo", "grpo"))
    used = resources(res, (ppo, dpo, grpo))
    rlhf_s = mean(used["ppo"]["train_seconds"])
    memory = {m: mean(res.memory.get(k, {}).values())            # the 25M-parameter model's
              for m, k in ((ppo, "RLHF"), (dpo, "DPO"), (grpo, "GRPO"))}
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
        for m, said in zip((ppo, dpo, grpo), cells):
            v, r = middle(res, m), used[m.name]
            reward_at = {u: list(res.column(m.name, u, "reward_mean").values())
                         for u in m.values if u in res.knobs_run(m.name)}
            means = {u: mean(x) for u, x in reward_at.items()}
            best = max(means, key=means.get, default=None)
            here = {
                "Training complexity": f"{mean(r['models']):.0f} models, {len(m.steps)} "
                                       f"training stage{'s' * (len(m.steps) > 1)} after SFT, "
                                       f"knobs: {m.knobs}",
                "Data requirements": m.data,
                "Training stability": f"true reward std over seeds {std(reward_at.get(v, [])):.3f} "
                                      f"({m.knob} {v}); means over {m.knob} from "
                                      f"{min(means.values(), default=float('nan')):.3f} to "
                                      f"{max(means.values(), default=float('nan')):.3f}",
                "Performance ceiling": f"best true reward {ms(reward_at.get(best, []))} "
                                       f"({m.knob} {best})",
                "GPU memory": f"{ratio(memory[m], memory[ppo]):.0%} of the memory RLHF's "
                              f"processes added, on a 25M-parameter model on the CPU "
                              f"({memory[m]:.0f} MiB)",
                "Training time": f"{mean(r['train_seconds']) / rlhf_s:.0%} of RLHF's training "
                                 f"time ({mean(r['train_seconds']):.0f} s)"}[row]
            out.append(f"{said}; here: {here}")
        rows.append(out)
    return md_table(["", "RLHF (reward model + PPO)", "DPO (+ NLL)", "GRPO"], rows)


SMOKE_BANNER = ("**A --smoke report: every number below comes from seconds-long runs of tiny "
                "models, so the verdicts mean nothing; they show that the report is whole.**")


def report(res: Results) -> str:
    n, seeds = len(res.sft), ", ".join(sorted(res.sft, key=int))
    failed = f"\n\nFailed runs: {', '.join(res.failed)}." if res.failed else ""
    what = "the comparison claims" if res.comparisons_only else "every method on one task"
    head = [f"# compare.py: {what} (seeds {seeds}; n = {n} per cell unless a cell says "
            "otherwise)",
            *[SMOKE_BANNER] * res.smoke,
            f"{res.date}, {res.seconds:.0f} s wall, {res.machine}; the runs, the SFT model and "
            f"the ceiling evaluated on {res.eval_prompts} held-out prompts.{failed}"]
    claims = ["## The articles' claims, and this project's own findings", CLAIMS_RULE,
              md_table(["claim", "source", "runs", "measured (per seed)", "verdict"],
                       [c.row() for c in judge(res, comparisons_only=res.comparisons_only)])]
    if res.comparisons_only:
        return "\n\n".join([*head, "## The ceiling (the KL-regularised optimum pi*)",
                              ceiling_table(res), *claims])
    return "\n\n".join([
        *head,
        "## The frontier (the plot's numbers)", frontier_table(res),
        "## The ceiling (the KL-regularised optimum pi*)", ceiling_table(res),
        "## Where the derivation says a run should land", promised_table(res),
        "## Resources (each method at its middle knob value)", resources_table(res),
        "## Distance from the ceiling", distance_sentences(res),
        "## Memory on a 25M-parameter model (a few steps of each script)", memory_table(res),
        "## The first article's method-selection table, measured", selection_table(res),
        "## GRPO's leash: where the KL goes, and the std scaling", leash_table(res),
        *claims,
        "## Checks: true by construction, measured to confirm the code",
        md_table(["what", "source", "runs", "measured"], [c.row() for c in checks(res)])])


CLAIMS_RULE = (
    "Judged seed by seed by one rule (experiments/claims.py, judge_seeds): each comparison "
    "is one metric, two arms at knob values fixed before the run (that differ in the one "
    "thing the claim is about, or, for two methods, in what its text names), and delta, the "
    "smallest difference that matters: the declared one, or on a seed its noise if larger "
    "(twice the standard error of the paired difference from evaluation noise, a bootstrap "
    "over the held-out prompts; for a regret, plus the ceiling's estimate error). A seed's "
    "difference is beyond delta in the claimed direction, reversed beyond it, within it, or "
    "within the noise (within a delta the noise widened: it cannot tell a difference that "
    "matters from none). \"holds\" needs every seed beyond (for \"not above\" / \"not "
    "below\": beyond or within), and a claim whose seeds disagree, or sit within the "
    "noise, is \"not settled\". a is the first run named, b the second.")
