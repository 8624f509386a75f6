"""Every method on one task: the reward-vs-KL frontier, the resources table, the claims.

True reward against KL to the SFT model for every method, what each costs, and the claims
of the two articles this project grew from, each against a measurement.

    python compare.py                      # the full run: seeds 0-2, 2 runs at a time
    python compare.py --seeds 0-4 --jobs 2
    python compare.py --smoke              # one seed, seconds-long runs (the tests run it)

What runs, from the same SFT checkpoint of each seed (sweep.py's planner and runner: one
process and one folder per run, each seed's SFT model trained once, finished runs reused,
so a second call with the same --out only re-reads them and redraws):
- METHODS: DPO (the paper's loss, on Bradley-Terry labels, and with the RPO term), IPO,
  SimPO, KTO, ORPO (from the pretrained checkpoint), LoRA-DPO, GRPO, and PPO with its reward
  model, each at three strengths of the knob that keeps it near the reference (beta, tau,
  lambda or kl_coef): each method traces a curve of true reward against KL.
- Baselines, no training: best-of-N sampling from the SFT model (N = 1 ... 16; the KL of
  the best of N samples to the SFT model is log N - (N-1)/N, Stiennon et al. 2020), and the
  same compute spent on more SFT (EXTRAS["sft_control"], its KL measured here).
- EXTRAS: the runs some claims need (DPO at SFT's learning rate, on a small pair set, with a
  length-biased labeller, from the pretrained model, on off-policy pairs; SimPO with that
  labeller), and in this process the spread of GRPO's group baseline against G.

What it writes in --out: compare.json (every run's eval metrics, the first and last logged
training metrics, and the measurements made here), compare.md (the frontier's numbers, the
resources table, the articles' method-selection table and the claims table, each cell a
mean +- sample std over seeds with n), frontier.png, and the plot again at --figure.
"""

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import sweep
from data.world import eval_prompts, reward
from evaluation import generate, kl_to_reference
from model import ScoreModel, add_lora, load_checkpoint
from train_grpo import rule_rewards

ROOT = Path(__file__).resolve().parent
SFT = "train_sft.py"


@dataclass(frozen=True)
class Method:
    name: str
    steps: tuple[str, ...]    # the steps after train_sft.py; the knob is given to the last
    knob: str                 # the flag that holds the policy near the reference
    values: tuple[str, ...]   # its values, loose leash first; the middle one is the resources row
    data: str                 # what it learns from
    models: int               # models held in memory while it trains
    trainable: str            # "model", "lora" or "model + critic"
    knobs: str                # the hyperparameters a user has to set

    @property
    def stage(self) -> str:
        """The last step's stage: its <stage>_eval.json and <stage>_metrics.jsonl."""
        return stage_of(shlex.split(self.steps[-1]))


DPO_KNOBS = "beta, learning rate"
METHODS = [
    Method("DPO, the paper's loss (Bradley-Terry labels)",
           ("train_dpo.py --rpo_alpha 0 --label_temperature 0.1",), "beta", ("0.1", "0.3", "1.0"),
           "preference pairs", 2, "model", DPO_KNOBS),
    Method("DPO + NLL (RPO, the default)", ("train_dpo.py",), "beta", ("0.03", "0.1", "0.3"),
           "preference pairs", 2, "model", DPO_KNOBS + ", rpo_alpha"),
    Method("IPO", ("train_dpo.py --loss ipo",), "beta", ("0.25", "0.5", "1.0"),
           "preference pairs", 2, "model", "tau, learning rate, rpo_alpha"),
    Method("SimPO", ("train_dpo.py --loss simpo",), "beta", ("1.0", "2.0", "4.0"),
           "preference pairs", 1, "model", "beta, gamma, learning rate, rpo_alpha"),
    Method("KTO", ("train_dpo.py --loss kto",), "beta", ("0.03", "0.1", "0.3"),
           "answers labelled good / bad", 2, "model",
           "beta, desirable / undesirable weights, learning rate"),
    Method("ORPO (no SFT stage)", ("train_dpo.py --loss orpo",), "beta", ("0.03", "0.1", "0.3"),
           "preference pairs (no SFT data)", 1, "model", "lambda, learning rate"),
    Method("LoRA-DPO (r = 8)", ("train_dpo.py --lora_rank 8 --learning_rate 2e-3",), "beta",
           ("0.03", "0.1", "0.3"), "preference pairs", 1, "lora",
           DPO_KNOBS + ", rpo_alpha, rank, alpha"),
    Method("GRPO", ("train_grpo.py",), "beta", ("0.01", "0.04", "0.16"),
           "prompts + a rule (correct or not)", 2, "model",
           "beta, G, epsilon, learning rate"),
    Method("PPO + reward model (RLHF)", ("train_rm.py", "train_ppo.py"), "kl_coef",
           ("0.02", "0.05", "0.1"), "preference pairs (the RM) + prompts", 4,
           "model + critic", "kl_coef, vf_coef, cliprange, cliprange_value, gamma, lam, "
           "num_ppo_epochs, num_mini_batches, learning rate; the RM's learning rate, steps"),
]
PAPER, DPO, IPO, SIMPO, KTO, ORPO, LORA, GRPO, PPO = METHODS
EXTRAS = {   # the last step of each (after train_sft.py); {out_dir} is the run's folder
    "sft_control": "train_sft.py --stage sft --init_from {out_dir}/sft.pt --sft_steps 2000",
    "dpo_sft_lr": "train_dpo.py --learning_rate 1e-3",
    "dpo_small_set": "train_dpo.py --num_prompts 128",
    "dpo_long_judge": "train_dpo.py --length_bonus 0.03",
    "simpo_long_judge": "train_dpo.py --loss simpo --length_bonus 0.03",
    "dpo_offpolicy": "train_dpo.py --pair_source offpolicy --num_prompts 20000",
    "dpo_from_pretrained": "train_dpo.py --pair_source offpolicy --num_prompts 20000 "
                           "--allow_pretrained --init_from {out_dir}/pretrain.pt",
}
# --smoke keeps every step seconds-long: these flags' values are replaced (--smoke itself
# leaves flags given on the command line alone)
SMOKE_FLAGS = {"--sft_steps": "20", "--num_prompts": "64"}
BEST_OF = (1, 2, 4, 8, 16)
GROUP_SIZES = (2, 4, 8, 16)


# ------------------------------------------------------------------ running

def chains(smoke: bool) -> dict[tuple[str, str], list[list[str]]]:
    """{(method or extra, knob value or ""): the run's steps as argv lists}. A smoke run takes
    the first knob value of each method, and gives every step --smoke."""
    out = {}
    for m in METHODS:
        for v in m.values[:1] if smoke else m.values:
            out[m.name, v] = [SFT, *m.steps[:-1], command(m, v)]
    for name, last in EXTRAS.items():
        out[name, ""] = [SFT, last]
    return {k: [smoke_argv(shlex.split(s)) if smoke else shlex.split(s) for s in c]
            for k, c in out.items()}


def smoke_argv(argv: list[str]) -> list[str]:
    """argv with the values of SMOKE_FLAGS put in, and --smoke."""
    argv = list(argv)
    for i, a in enumerate(argv[:-1]):
        if a in SMOKE_FLAGS:
            argv[i + 1] = SMOKE_FLAGS[a]
    return argv + ["--smoke"]


def run_all(smoke: bool, seeds: list[int], out: Path, jobs: int) -> dict:
    """Train (or reuse) every run; {"runs": {name: {value: {seed: metrics}}}, "sft": {seed:
    the SFT model's eval}}, with each run's folder and its metrics file in brief (read_log)."""
    runs_of = chains(smoke)
    keys = list(runs_of)
    runs, todo = sweep.plan(list(runs_of.values()), seeds, out)
    print(f"{len(runs)} runs ({len(keys)} per seed x {len(seeds)} seeds) in {out}", flush=True)
    sweep.run_steps(todo, jobs)
    result = {"runs": {}, "sft": {}, "failed": []}
    for seed, c, last in runs:
        name, value = keys[c]
        if not last.ok:
            result["failed"].append(f"{name} {value} seed {seed}")
            continue
        metrics = sweep.run_metrics(last)
        metrics["folder"] = str(last.folder)
        log = last.folder / f"{stage_of(last.argv)}_metrics.jsonl"
        if log.exists():
            metrics["log"] = read_log(log)
        result["runs"].setdefault(name, {}).setdefault(value, {})[str(seed)] = metrics
    for seed in sorted({seed for seed, _, last in runs if last.ok}):   # SFT: once per seed
        result["sft"][str(seed)] = json.loads((out / f"seed{seed}" / "sft_eval.json").read_text())
    return result


def stage_of(argv: list[str]) -> str:
    """The stage a step writes (<stage>_eval.json, <stage>_metrics.jsonl)."""
    if argv[0] == "train_dpo.py":
        return argv[argv.index("--loss") + 1] if "--loss" in argv else "dpo"
    return {"train_sft.py": "sft", "train_grpo.py": "grpo", "train_rm.py": "rm",
            "train_ppo.py": "ppo"}[argv[0]]


def read_log(path: Path, window: int = 10) -> dict:
    """A metrics file in brief: the first logged step (step 0), the means of each metric over
    `window` logged steps around the middle and at the end (one batch's numbers are noisy),
    the median seconds per step (step 0 left out: it includes warm-up), the steps."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    mid = len(lines) // 2

    def average(rows):
        return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]
                if all(isinstance(r.get(k), (int, float)) for r in rows)}
    return {"first": lines[0], "middle": average(lines[max(0, mid - window // 2):][:window]),
            "last": average(lines[-window:]),
            "median_dt": statistics.median(r["dt"] for r in lines[1:] or lines),
            "steps": lines[-1]["step"] + 1}


# ------------------------------------------------------------------ measured here

@torch.no_grad()
def best_of_n(model, prompts, seed: int) -> dict[str, float]:
    """Mean true reward of the best of the first N of 16 samples per prompt, for each N."""
    texts, _ = generate(model, prompts, num_samples=max(BEST_OF), seed=seed)
    R = torch.tensor([[reward(p, texts[i * max(BEST_OF) + g]) for g in range(max(BEST_OF))]
                      for i, p in enumerate(prompts)])                   # (prompts, 16)
    return {str(n): R[:, :n].max(1).values.mean().item() for n in BEST_OF}


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n nats, for answers without ties."""
    return math.log(n) - (n - 1) / n


@torch.no_grad()
def group_baseline(model, prompts, seed: int, samples: int = 64) -> dict[str, dict]:
    """GRPO's advantage is (r - group mean) / group std. For each G: how far the group mean
    (the baseline every answer is compared with) moves between groups of one prompt (std over
    its samples // G groups, mean over prompts); the share of groups whose rewards are all
    equal (zero std: no gradient); and the seconds to sample G answers for every prompt."""
    texts, _ = generate(model, prompts, num_samples=samples, seed=seed)
    R = rule_rewards([p for p in prompts for _ in range(samples)], texts).view(len(prompts),
                                                                               samples)
    out = {}
    for G in GROUP_SIZES:
        groups = R[:, :samples // G * G].reshape(len(prompts), samples // G, G)
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


def measure(result: dict, seeds: list[int], out: Path, smoke: bool) -> None:
    """The measurements made in this process, per seed, from the seed's SFT model."""
    prompts = eval_prompts(16 if smoke else 256)
    result.update(best_of_n={}, group_baseline={}, sft_control_kl={})
    for seed in seeds:
        sft_path = out / f"seed{seed}" / "sft.pt"
        sft, _ = load_checkpoint(sft_path)
        result["best_of_n"][str(seed)] = best_of_n(sft, prompts, seed)
        result["group_baseline"][str(seed)] = group_baseline(sft, prompts[:64], seed,
                                                             32 if smoke else 64)
        control = result["runs"].get("sft_control", {}).get("", {}).get(str(seed))
        if control:
            more, _ = load_checkpoint(Path(control["folder"]) / "sft.pt")
            _, tokens = generate(more, prompts, seed=seed)
            result["sft_control_kl"][str(seed)] = kl_to_reference(more, sft, prompts, tokens)
    result["trainable_params"] = trainable_params(out / f"seed{seeds[0]}" / "sft.pt")


# ------------------------------------------------------------------ reading the results

def at(run: dict, key: str) -> float:
    """A run's number: an eval metric ('dpo/reward_mean'), or a logged training metric at the
    first, middle or last logged step ('log:last:rewards/margins')."""
    if key.startswith("log:"):
        _, when, name = key.split(":")
        return run.get("log", {}).get(when, {}).get(name, math.nan)
    return run.get(key, math.nan)


def by_seed(result: dict, name: str, value: str, key: str) -> dict[str, float]:
    return {seed: at(run, key) for seed, run in result["runs"].get(name, {}).get(value, {}).items()}


def sft_by_seed(result: dict, key: str = "reward_mean") -> dict[str, float]:
    return {seed: e[key] for seed, e in result["sft"].items()}


def paired(*columns: dict) -> list[list[float]]:
    """The columns' values on the seeds they all have, each column a list in seed order."""
    seeds = sorted(set.intersection(*(set(c) for c in columns)), key=int)
    return [[c[s] for s in seeds] for c in columns]


def ms(values, f=".3f") -> str:
    """'mean ± std' over the finite values (sample std; 0 for one value), or 'n/a'."""
    s = sweep.summarize(list(values))
    return "n/a" if not s["n"] else f"{s['mean']:{f}} ± {s['std']:{f}}"


def mean(values) -> float:
    return sweep.summarize(list(values))["mean"]


def middle(result: dict, m: Method) -> str:
    """The knob value of m's resources row: the middle one, or the nearest that ran."""
    ran = [v for v in m.values if v in result["runs"].get(m.name, {})]
    return min(ran, key=lambda v: abs(m.values.index(v) - len(m.values) // 2)) if ran else ""


def command(m: Method, value: str) -> str:
    """The last step of m's run at knob value `value`."""
    return f"{m.steps[-1]} --{m.knob} {value}"


# ------------------------------------------------------------------ the plot and the tables

def frontier_points(result: dict) -> dict[str, list[dict]]:
    """{curve: [{label, kl: [per seed], reward: [per seed], win: [...]}]}: the methods' runs,
    then best-of-N (KL in closed form), the SFT model and the SFT control."""
    curves = {}
    for m in METHODS:
        for v in m.values:
            if v in result["runs"].get(m.name, {}):
                kl, rw, win = (list(by_seed(result, m.name, v, f"{m.stage}/{k}").values())
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


def plot(result: dict, paths: list[Path]) -> None:
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
        ax.errorbar(x, y, xerr=[sweep.summarize(p["kl"])["std"] for p in points],
                    yerr=[sweep.summarize(p["reward"])["std"] for p in points],
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


def resources(result: dict) -> dict[str, dict]:
    """Per method, at its middle knob value: the numbers of the resources table, per seed.
    PPO's include its reward model's stage (peak memory: the larger; time: the sum)."""
    out = {}
    for m in METHODS:
        v = middle(result, m)
        runs = result["runs"].get(m.name, {}).get(v, {})
        rm = m is PPO
        out[m.name] = {
            "value": v,
            "peak_mb": [max(at(r, f"{m.stage}/peak_memory_mb"),
                            at(r, "rm/peak_memory_mb") if rm else 0) for r in runs.values()],
            "dt": [r.get("log", {}).get("median_dt", math.nan) for r in runs.values()],
            "steps": [r.get("log", {}).get("steps", math.nan) for r in runs.values()],
            "train_seconds": [at(r, f"{m.stage}/train_seconds") +
                              (at(r, "rm/train_seconds") if rm else 0) for r in runs.values()]}
    return out


def resources_table(result: dict) -> str:
    params, res = result["trainable_params"], resources(result)
    rows = [[m.name, f"{m.knob} {res[m.name]['value']}", m.models,
             f"{params[m.trainable]:,}", ms(res[m.name]["peak_mb"], ".0f"),
             ms(res[m.name]["dt"], ".3f"), f"{mean(res[m.name]['steps']):.0f}",
             ms(res[m.name]["train_seconds"], ".0f"), m.data, m.knobs] for m in METHODS]
    return md_table(["method", "run", "models in memory", "trainable parameters",
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
            v, runs = middle(result, m), result["runs"].get(m.name, {})
            reward_at = {u: list(by_seed(result, m.name, u, f"{m.stage}/reward_mean").values())
                         for u in m.values if u in runs}
            if row == "Training complexity":
                here = (f"{m.models} models, {len(m.steps)} training stage"
                        f"{'s' * (len(m.steps) > 1)} after SFT, knobs: {m.knobs}")
            elif row == "Data requirements":
                here = m.data
            elif row == "Training stability":
                means = [mean(r) for r in reward_at.values()]
                seed_std = sweep.summarize(reward_at.get(v, []))["std"]
                here = (f"true reward std over seeds {seed_std:.3f} ({m.knob} {v}); means "
                        f"over {m.knob} from "
                        f"{min(means):.3f} to {max(means):.3f}" if means else "n/a")
            elif row == "Performance ceiling":
                best = max(reward_at, key=lambda u: mean(reward_at[u]), default=None)
                here = (f"best true reward {ms(reward_at[best])} ({m.knob} {best})" if best
                        else "n/a")
            elif row == "GPU memory":
                here = (f"{mean(res[m.name]['peak_mb']) / rlhf_mb:.0%} of RLHF's peak process "
                        f"memory on the CPU ({mean(res[m.name]['peak_mb']):.0f} MiB)")
            else:
                here = (f"{mean(res[m.name]['train_seconds']) / rlhf_s:.0%} of RLHF's "
                        f"training time ({mean(res[m.name]['train_seconds']):.0f} s)")
            out.append(f"{said}; here: {here}")
        rows.append(out)
    return md_table(["", "RLHF (reward model + PPO)", "DPO (+ NLL)", "GRPO"], rows)


# ------------------------------------------------------------------ the claims

def every(a: list[float], b: list[float], above=True) -> bool:
    """a above (or below) b on every seed both have."""
    return bool(a) and all((x > y) == above for x, y in zip(a, b))


def verdict(holds: bool, fails: bool = None) -> str:
    """'holds', 'does not hold', or 'mixed' (neither on every seed)."""
    fails = (not holds) if fails is None else fails
    return "holds" if holds else "does not hold" if fails else "mixed"


def claims(result: dict) -> list[list[str]]:
    """[claim, the runs that test it, measured, verdict] for each claim of the two articles
    (../shared/seeds/ in the project's workspace) that this task can test."""
    R = lambda name, value, key: by_seed(result, name, value, key)          # noqa: E731
    sft = sft_by_seed(result)
    dpo, dv = DPO.name, "0.1"                                # the default DPO run
    rows = []

    first = [x for v in PAPER.values for x in R(PAPER.name, v, "log:first:loss").values()]
    rows.append(["DPO's loss is ln 2 at the start (policy = reference)",
                 command(PAPER, "B") + ", the loss logged at step 0",
                 f"{ms(first, '.4f')} over {len(first)} runs (ln 2 = {math.log(2):.4f})",
                 verdict(bool(first) and all(abs(x - math.log(2)) < 1e-3 for x in first))])

    for m in (PAPER, DPO):
        kls = [R(m.name, v, f"{m.stage}/kl_to_ref") for v in m.values]
        seqs = list(zip(*paired(*kls))) if all(kls) else []
        rows.append([f"Higher beta keeps the policy closer to the reference ({m.name})",
                     command(m, "B") + f", B = {', '.join(m.values)}",
                     "KL " + "; ".join(f"{ms(k.values(), '.2f')} at {v}"
                                       for v, k in zip(m.values, kls)),
                     verdict(bool(seqs) and all(all(a > b for a, b in zip(s, s[1:]))
                                                for s in seqs))])

    a, s, d = paired(R("dpo_sft_lr", "", "dpo/reward_mean"), sft,
                     R(dpo, dv, "dpo/reward_mean"))
    rows.append(["DPO needs a learning rate far below SFT's; at SFT's it ends worse than the "
                 "SFT model", EXTRAS["dpo_sft_lr"] + " (SFT's; the default is 2e-4)",
                 f"true reward {ms(a)} at 1e-3 against {ms(s)} for the SFT model and {ms(d)} "
                 f"at 2e-4", verdict(every(a, s, above=False), every(a, s))])

    margin, loss, nll, small, full = paired(
        R("dpo_small_set", "", "log:last:rewards/margins"),
        R("dpo_small_set", "", "log:last:loss"), R("dpo_small_set", "", "log:last:nll_loss"),
        R("dpo_small_set", "", "dpo/reward_mean"), R(dpo, dv, "dpo/reward_mean"))
    dpo_part = [x - y for x, y in zip(loss, nll)]
    overfit = bool(margin) and mean(margin) > 10 and mean(dpo_part) < 0.1
    rows.append(["Many epochs on a small pair set overfit: margin > 10, loss near 0, "
                 "quality falls", EXTRAS["dpo_small_set"] + " (about 110 pairs, 150 steps of "
                 "32: about 40 epochs) against the default 2000 prompts",
                 f"last margin {ms(margin, '.2f')}, DPO loss {ms(dpo_part)}; true reward "
                 f"{ms(small)} against {ms(full)}",
                 "holds" if overfit and every(small, full, above=False) else
                 "partly" if overfit or every(small, full, above=False) else "does not hold"])

    dl, d0, sl, s0 = paired(R("dpo_long_judge", "", "dpo/mean_length"),
                            R(dpo, dv, "dpo/mean_length"),
                            R("simpo_long_judge", "", "simpo/mean_length"),
                            R(SIMPO.name, "2.0", "simpo/mean_length"))
    rows.append(["Chosen answers much longer than rejected teach length",
                 EXTRAS["dpo_long_judge"] + " (a labeller that adds 0.03 a word)",
                 f"DPO's answers {ms(dl, '.1f')} tokens against {ms(d0, '.1f')} with the true "
                 f"labeller", verdict(every(dl, d0))])
    gain_d, gain_s = mean(dl) - mean(d0), mean(sl) - mean(s0)
    rows.append(["SimPO's length normalisation prevents it",
                 EXTRAS["simpo_long_judge"],
                 f"SimPO's answers {ms(sl, '.1f')} tokens against {ms(s0, '.1f')} with the true "
                 f"labeller: {gain_s:+.1f} against DPO's {gain_d:+.1f}",
                 verdict(bool(sl) and gain_s < gain_d / 2, bool(sl) and gain_s >= gain_d / 2)])

    im, il, dm, dl_ = paired(R(IPO.name, "0.5", "log:middle:rewards/margins"),
                             R(IPO.name, "0.5", "log:last:rewards/margins"),
                             R(dpo, dv, "log:middle:rewards/margins"),
                             R(dpo, dv, "log:last:rewards/margins"))
    bounded = bool(il) and all(x < 1.0 for x in il)      # within twice IPO's target
    rows.append(["IPO keeps the margin bounded where DPO's grows",
                 command(IPO, "0.5") + " and " + command(DPO, dv) + ": rewards/margins at the "
                 "middle and last 10 logged steps",
                 f"IPO {ms(im)} -> {ms(il)} (its target tau x 1/(2 tau) = 0.5); DPO {ms(dm)} "
                 f"-> {ms(dl_)}",
                 "holds" if bounded and every(dl_, dm) else "partly: IPO's is bounded, DPO's "
                 "grew on the mean, not on every seed" if bounded and mean(dl_) > mean(dm)
                 else "does not hold"])

    for m, claim in ((KTO, "KTO works from binary labels (no pairs)"),
                     (ORPO, "ORPO works without an SFT stage")):
        x, s, d = paired(R(m.name, "0.1", f"{m.stage}/reward_mean"), sft,
                         R(dpo, dv, "dpo/reward_mean"))
        rows.append([claim, command(m, "0.1"),
                     f"true reward {ms(x)} against {ms(s)} for the SFT model ({ms(d)} for DPO)",
                     verdict(every(x, s))])

    pre, off = paired(R("dpo_from_pretrained", "", "dpo/reward_mean"),
                      R("dpo_offpolicy", "", "dpo/reward_mean"))
    rows.append(["DPO started from a model that was never SFT'd trains poorly",
                 EXTRAS["dpo_from_pretrained"], f"true reward {ms(pre)} against {ms(off)} from "
                 "the SFT model on the same pairs", verdict(every(pre, off, above=False),
                                                            every(pre, off))])
    on, off, won, woff = paired(R(dpo, dv, "dpo/reward_mean"),
                                R("dpo_offpolicy", "", "dpo/reward_mean"),
                                R(dpo, dv, "dpo/win_rate_vs_sft"),
                                R("dpo_offpolicy", "", "dpo/win_rate_vs_sft"))
    rows.append(["On-policy pairs (the SFT model's own samples) beat off-policy pairs",
                 f"{command(DPO, dv)} against {EXTRAS['dpo_offpolicy']}",
                 f"true reward {ms(on)} against {ms(off)}; win rate {ms(won)} against "
                 f"{ms(woff)}", verdict(every(on, off), every(off, on))])

    res = resources(result)
    peak = {m: mean(res[m.name]["peak_mb"]) for m in (DPO, LORA, SIMPO, PPO, GRPO)}
    rows.append(["LoRA (adapters-off reference) and SimPO (no reference) halve DPO's memory",
                 command(LORA, "0.1") + ", " + command(SIMPO, "2.0"),
                 f"peak process memory on the CPU {peak[LORA]:.0f} and {peak[SIMPO]:.0f} MiB "
                 f"against DPO's {peak[DPO]:.0f}; one model in memory instead of two",
                 "not testable at 0.4M parameters (the process's memory is the runtime's); "
                 "bench.py measures it on an 85M model"])
    time_ = {m: mean(res[m.name]["train_seconds"]) for m in (DPO, PPO, GRPO)}
    mem_pct = [peak[m] / peak[PPO] * 100 for m in (DPO, GRPO)]
    time_pct = [time_[m] / time_[PPO] * 100 for m in (DPO, GRPO)]
    rows.append(["RLHF holds 4 models, DPO and GRPO 2", "train_ppo.py (it prints them), "
                 "train_dpo.py, train_grpo.py", f"{PPO.models}, {DPO.models} and {GRPO.models} "
                 "(the scripts' models; DPO's reference log-probs are computed once, before "
                 "training)", "holds"])
    for what, said, got in (("memory", (40, 60), mem_pct), ("time", (30, 60), time_pct)):
        close = all(abs(g - s) <= 15 for g, s in zip(got, said))
        ordered = got[0] < got[1] < 100
        rows.append([f"Training {what}: RLHF 100%, DPO {said[0]}%, GRPO {said[1]}%",
                     "the resources table (middle knob values)",
                     f"DPO {got[0]:.0f}%, GRPO {got[1]:.0f}% of RLHF's",
                     "not testable at 0.4M parameters (the process's memory is the runtime's "
                     "and the sampler's, not the weights')" if what == "memory" else
                     "holds" if close and ordered else "the order holds, the ratios do not"
                     if ordered else "does not hold"])
    rows.append(["DPO trains 3-10x faster than RLHF", "the resources table",
                 f"RLHF (reward model + PPO) took {time_[PPO] / time_[DPO]:.1f}x DPO's training "
                 "time", verdict(3 <= time_[PPO] / time_[DPO] <= 10)])

    spread = {}
    for m in (PPO, DPO):
        r = {v: list(R(m.name, v, f"{m.stage}/reward_mean").values()) for v in m.values}
        means = [mean(x) for x in r.values() if x]
        seeds = sweep.summarize(r[middle(result, m)]) if means else {"n": 0}
        spread[m] = (seeds["std"] if seeds["n"] > 1 else math.nan,
                     max(means) - min(means) if len(means) > 1 else math.nan)
    rows.append(["PPO is less stable than DPO", f"{command(PPO, 'K')}, K = "
                 f"{', '.join(PPO.values)}; {command(DPO, 'B')}, B = {', '.join(DPO.values)}",
                 f"true reward std over seeds {spread[PPO][0]:.3f} (PPO) against "
                 f"{spread[DPO][0]:.3f} (DPO); range of means over the knob {spread[PPO][1]:.3f} "
                 f"against {spread[DPO][1]:.3f}",
                 verdict(all(p > d for p, d in zip(spread[PPO], spread[DPO])),
                         all(p < d for p, d in zip(spread[PPO], spread[DPO])))])

    points = frontier_points(result)
    dpo_pts = [(mean(p["kl"]), mean(p["reward"])) for p in points.get(dpo, [])]
    matched = []
    for p in points.get(PPO.name, []):
        kl, rw, sd = mean(p["kl"]), mean(p["reward"]), sweep.summarize(p["reward"])["std"]
        best = max((r for k, r in dpo_pts if k <= kl), default=None)
        matched.append((p["label"], kl, rw, best, best is not None and best >= rw - sd))
    top_kl, top = max(dpo_pts, key=lambda t: t[1], default=(math.nan, math.nan))
    rows.append(["DPO matches or beats PPO on the reward-vs-KL frontier",
                 "the frontier: DPO + NLL's best true reward at a KL no larger than each PPO "
                 "point's", "; ".join(f"PPO {lab}: {rw:.3f} at {kl:.2f} nats, DPO "
                                      + (f"{best:.3f}" if best is not None else "none that close")
                                      for lab, kl, rw, best, _ in matched)
                 + f" (DPO's best anywhere: {top:.3f} at {top_kl:.2f} nats)",
                 verdict(bool(matched) and all(ok for *_, ok in matched))])

    gb = result["group_baseline"]
    std_g = [mean(g[str(G)]["baseline_std"] for g in gb.values()) for G in GROUP_SIZES]
    sec_g = [mean(g[str(G)]["sample_seconds"] for g in gb.values()) for G in GROUP_SIZES]
    zero_g = [mean(g[str(G)]["frac_zero_std"] for g in gb.values()) for G in GROUP_SIZES]
    rows.append(["A larger group G lowers the variance of GRPO's advantage, at a linear cost",
                 "measured here: the SFT model's 64 answers to each of 64 prompts, split into "
                 "groups of G",
                 "std of the group-mean baseline " + ", ".join(
                     f"{s:.3f} (G = {G})" for s, G in zip(std_g, GROUP_SIZES)) +
                 "; groups with one reward for all (no gradient) " + ", ".join(
                     f"{z:.2f}" for z in zero_g) +
                 f"; seconds to sample G answers per prompt: x{sec_g[-1] / sec_g[0]:.1f} from "
                 f"G = {GROUP_SIZES[0]} to {GROUP_SIZES[-1]} (linear: x"
                 f"{GROUP_SIZES[-1] // GROUP_SIZES[0]})",
                 "holds" if all(a > b for a, b in zip(std_g, std_g[1:])) and
                 sec_g[-1] / sec_g[0] >= 4 else "partly" if all(
                     a > b for a, b in zip(std_g, std_g[1:])) else "does not hold"])

    g, s, p8 = paired(R(GRPO.name, "0.04", "grpo/accuracy"), sft_by_seed(result, "accuracy"),
                      R(GRPO.name, "0.04", "grpo/sft_pass@8"))
    closed = (mean(g) - mean(s)) / max(1e-9, mean(p8) - mean(s)) if g else math.nan
    rows.append(["GRPO with a verifiable reward sharpens pass@1 toward pass@G",
                 command(GRPO, "0.04"),
                 f"sampled accuracy {ms(s)} (SFT) -> {ms(g)} (GRPO); the SFT model's pass@8 "
                 f"{ms(p8)}: {closed:.0%} of the gap closed",
                 verdict(every(g, s) and closed > 0.5)])

    w, ira = paired(R(dpo, dv, "dpo/win_rate_vs_sft"), R(dpo, dv, "dpo/implicit_reward_accuracy"))
    rows.append(["A DPO model should beat the SFT model's answer on over 60% of prompts",
                 command(DPO, dv), f"win rate {ms(w)}", verdict(bool(w) and min(w) > 0.6)])
    rows.append(["On held-out pairs the implicit reward separates chosen from rejected",
                 command(DPO, dv), f"implicit reward ranks chosen first on {ms(ira)} of the "
                 "pairs", verdict(bool(ira) and min(ira) > 0.9)])
    for row in rows:      # a claim whose numbers are not all there is not judged
        if "n/a" in row[2] or "nan" in row[2]:
            row[3] = "not run"
    return rows


def report(result: dict, seeds: list[int], seconds: float) -> str:
    n = len(result["sft"])
    failed = f"\n\nFailed runs: {', '.join(result['failed'])}." if result["failed"] else ""
    return "\n\n".join([
        f"# compare.py: every method on one task (seeds {', '.join(map(str, seeds))}; "
        f"n = {n} per cell unless a cell says otherwise)",
        f"{time.strftime('%Y-%m-%d')}, {seconds:.0f} s wall for this call, torch "
        f"{torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU'}.{failed}",
        "## The frontier (the plot's numbers)", frontier_table(result),
        "## Resources (each method at its middle knob value)", resources_table(result),
        "## The first article's method-selection table, measured", selection_table(result),
        "## The articles' claims", md_table(["claim", "runs", "measured (mean ± std)",
                                             "verdict"], claims(result))])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", default=None,
                        help="seeds and ranges (default: 0-2; 0 with --smoke)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default: 2)")
    parser.add_argument("--out", default=None, help="folder of the runs and the results "
                        "(default: sweeps/compare; sweeps/compare_smoke with --smoke)")
    parser.add_argument("--figure", default=None, help="also save the plot here (default: "
                        "docs/frontier.png; none with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="one seed, seconds-long runs, the first knob value of each method")
    args = parser.parse_args(argv)
    try:
        seeds = sweep.parse_seeds(args.seeds or (["0"] if args.smoke else ["0-2"]))
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    except ValueError as e:
        sys.exit(f"error: {e}")
    out = Path(args.out or ("sweeps/compare_smoke" if args.smoke else "sweeps/compare")).resolve()
    t0 = time.time()
    result = run_all(args.smoke, seeds, out, args.jobs)
    if not result["sft"]:
        sys.exit("error: no run finished (see the FAIL lines above)")
    print("measuring best-of-N, GRPO's group baseline and the SFT control's KL", flush=True)
    measure(result, [int(s) for s in result["sft"]], out, args.smoke)
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    figures = [out / "frontier.png"]
    if args.figure or not args.smoke:
        figures.append(Path(args.figure or ROOT / "docs" / "frontier.png"))
    plot(result, figures)
    text = report(result, seeds, time.time() - t0)
    (out / "compare.md").write_text(text + "\n")
    print(text)
    print(f"\nresults: {out / 'compare.md'}, compare.json; plot: "
          f"{', '.join(map(str, figures))}")
    return result


if __name__ == "__main__":
    main()
