"""compare's results as typed data, and the arithmetic every table and verdict is made of.

A Run is one trained run (a method or an extra run, at one knob value and seed): its eval
numbers and its metrics file in brief (a Log). Results holds every run, each seed's SFT
model, the memory runs and what compare.py measured in its own process; it is what
compare.json holds, and Results.load reads it back. Standard library only.
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from experiments.sweep import summarize


@dataclass
class Log:
    """A run's metrics file in brief: the first logged step, the means of each metric over 10
    logged steps around the middle and at the end, the median seconds a step, the steps."""
    first: dict[str, float]
    middle: dict[str, float]
    last: dict[str, float]
    median_dt: float
    steps: int


@dataclass
class Run:
    method: str                # a Method's name (experiments/methods.py) or an extra run's
    knob: str                  # the knob's value ("" for an extra run)
    seed: int
    stage: str                 # the stage of its last step: its own numbers are "<stage>/..."
    numbers: dict[str, float]  # every eval file its steps wrote, "stage/metric", and seconds
    log: Log | None = None     # its training metrics in brief
    path: list[dict] = field(default_factory=list)   # --eval_every's points, if any
    folder: str = ""           # its folder, within compare.py's --out

    def get(self, metric: str, stage: str = "") -> float:
        """One of its eval numbers (its own stage's unless another is named), NaN if missing."""
        return self.numbers.get(f"{stage or self.stage}/{metric}", math.nan)

    def logged(self, when: str, metric: str) -> float:
        """A training metric at the "first", "middle" or "last" logged steps, NaN if missing."""
        return getattr(self.log, when).get(metric, math.nan) if self.log else math.nan


@dataclass
class Results:
    date: str = ""                                            # when compare.py made them
    seconds: float = 0.0                                      # its wall time
    machine: str = ""                                         # torch's version, CPU or CUDA
    smoke: bool = False                                       # seconds-long runs of tiny models
    eval_prompts: int = 256                                   # held-out prompts of every eval
    comparisons_only: bool = False                            # compare.py --comparisons
    runs: list[Run] = field(default_factory=list)
    sft: dict[str, dict] = field(default_factory=dict)       # seed -> the SFT model's eval
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # MiB added, per seed
    failed: list[str] = field(default_factory=list)
    # measured in compare's own process (experiments/measure.py), each by seed
    ceiling: dict = field(default_factory=dict)               # seed -> [{beta, kl, reward}]
    ceiling_check: dict = field(default_factory=dict)
    best_of_n: dict = field(default_factory=dict)             # seed -> N -> {reward, kl}
    promised_by_seed: dict = field(default_factory=dict)      # seed -> method -> knob -> (R, KL)
    promised: dict = field(default_factory=dict)              # method -> knob -> {kl, reward}
    distance: dict = field(default_factory=dict)              # seed -> method -> knob -> ...
    group_baseline: dict = field(default_factory=dict)        # seed -> G -> {...}
    sft_control_kl: dict = field(default_factory=dict)        # seed -> KL
    noise: dict = field(default_factory=dict)     # comparison -> seed -> SE (claims.py)
    trainable_params: dict = field(default_factory=dict)      # Method.trainable -> count

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Results":
        saved = json.loads(Path(path).read_text())
        runs = [Run(**{**r, "log": Log(**r["log"]) if r["log"] else None})
                for r in saved.pop("runs")]
        return cls(runs=runs, **saved)

    def runs_of(self, method: str, knob: str = "") -> dict[str, Run]:
        """{seed: run} of one method (or extra run) at one knob value."""
        return {str(r.seed): r for r in self.runs if r.method == method and r.knob == knob}

    def column(self, method: str, knob: str, metric: str) -> dict[str, float]:
        """{seed: one of its own eval numbers} of a method at a knob value (or an extra run)."""
        return {s: r.get(metric) for s, r in self.runs_of(method, knob).items()}

    def sft_folder(self, seed: str) -> str:
        """Where the seed's SFT model's evaluation lies, within compare.py's --out: its
        --eval_prompts run (methods.SFT_EVAL), else its training step's seed folder."""
        again = self.runs_of("sft").get(seed)
        return again.folder if again else f"seed{seed}"

    def knobs_run(self, method: str) -> list[str]:
        return list(dict.fromkeys(r.knob for r in self.runs if r.method == method))

    def sft_column(self, metric: str = "reward_mean") -> dict[str, float]:
        return {seed: e.get(metric, math.nan) for seed, e in self.sft.items()}


def paired(*columns: dict) -> list[list[float]]:
    """The columns' values on the seeds they all have, each column a list in seed order."""
    seeds = sorted(set.intersection(*(set(c) for c in columns)), key=int)
    return [[c[s] for s in seeds] for c in columns]


def ms(values, f=".3f") -> str:
    """'mean ± std' over the finite values (sample std; 0 for one value), or 'n/a'; where some
    values are NaN (a number the run could not have), how many the mean has: "(n = 2 of 3)"."""
    values = list(values)
    s = summarize(values)
    if not s["n"]:
        return "n/a"
    out = f"{s['mean']:{f}} ± {s['std']:{f}}"
    return out if s["n"] == len(values) else out + f" (n = {s['n']} of {len(values)})"


def mean(values) -> float:
    return summarize(list(values))["mean"]


def std(values) -> float:
    return summarize(list(values))["std"]


def ratio(a: float, b: float) -> float:
    """a / b, or NaN when b is 0: a memory run whose process added nothing measurable above
    its start (a smoke-sized model) gives no ratio, and a claim on it is "not run"."""
    return a / b if b else math.nan


def middle(results: Results, m) -> str:
    """The knob value of m's resources row: the middle one, or the nearest that ran."""
    ran = [v for v in m.values if v in results.knobs_run(m.name)]
    return min(ran, key=lambda v: abs(m.values.index(v) - len(m.values) // 2)) if ran else ""


def resources(results: Results, methods) -> dict[str, dict]:
    """Per method, at its middle knob value, per seed: what the resources table shows. A
    method with a step before its last (PPO's reward model) counts that step's stage too
    (peak memory: the larger; time: the sum); models: the distinct sets of weights alive as
    training started, measured by the script."""
    out = {}
    for m in methods:
        v = middle(results, m)
        runs = results.runs_of(m.name, v).values()
        before = [s.split()[0].removesuffix(".py").removeprefix("train_") for s in m.before]
        out[m.name] = {
            "value": v,
            "models": [r.logged("first", "models_in_memory") for r in runs],
            "peak_mb": [max(r.get("peak_memory_mb", s) for s in [r.stage, *before])
                        for r in runs],
            "dt": [r.log.median_dt if r.log else math.nan for r in runs],
            "steps": [r.log.steps if r.log else math.nan for r in runs],
            "train_seconds": [sum(r.get("train_seconds", s) for s in [r.stage, *before]) -
                              path_seconds(r) for r in runs]}
    return out


def path_seconds(run: Run) -> float:
    """The seconds a run spent measuring its path (--eval_every), not training."""
    return sum(p["seconds"] for p in run.path)


def distance(results: Results, m, value: str, key: str) -> list[float]:
    """A run's distance from the ceiling, per seed: "gap" (R*(KL) - R) or "efficiency"
    (KL*(R) / KL), measured from the seed's own ceiling (experiments/measure.py)."""
    return [d[m.name][value][key] for d in results.distance.values()
            if value in d.get(m.name, {})]
