"""Reading compare's results: a run's number per seed, the seeds two columns share, mean ±
std, and the two words every verdict is made of. Standard library only."""

import math

from experiments.methods import METHODS, PPO, Method
from experiments.sweep import summarize


def at(run: dict, key: str) -> float:
    """A run's number: an eval metric ('dpo/reward_mean'), or a logged training metric at the
    first, middle or last logged step ('log:last:rewards/margins')."""
    if key.startswith("log:"):
        _, when, name = key.split(":")
        return run.get("log", {}).get(when, {}).get(name, math.nan)
    return run.get(key, math.nan)


def by_seed(result: dict, name: str, value: str, key: str) -> dict[str, float]:
    """{seed: the number} of one method (or extra) at one knob value ("" for an extra)."""
    return {seed: at(run, key) for seed, run in result["runs"].get(name, {}).get(value, {}).items()}


def of(result: dict, m: Method, value: str, metric: str) -> dict[str, float]:
    """{seed: a metric of m's own stage} at knob value `value` ('reward_mean', 'kl_to_ref')."""
    return by_seed(result, m.name, value, f"{m.stage}/{metric}")


def sft_by_seed(result: dict, key: str = "reward_mean") -> dict[str, float]:
    return {seed: e[key] for seed, e in result["sft"].items()}


def paired(*columns: dict) -> list[list[float]]:
    """The columns' values on the seeds they all have, each column a list in seed order."""
    seeds = sorted(set.intersection(*(set(c) for c in columns)), key=int)
    return [[c[s] for s in seeds] for c in columns]


def ms(values, f=".3f") -> str:
    """'mean ± std' over the finite values (sample std; 0 for one value), or 'n/a'."""
    s = summarize(list(values))
    return "n/a" if not s["n"] else f"{s['mean']:{f}} ± {s['std']:{f}}"


def mean(values) -> float:
    return summarize(list(values))["mean"]


def std(values) -> float:
    return summarize(list(values))["std"]


def ratio(a: float, b: float) -> float:
    """a / b, or NaN when b is 0: a memory run whose process added nothing measurable above
    its start (a smoke-sized model) gives no ratio, and a claim on it is "not run"."""
    return a / b if b else math.nan


def middle(result: dict, m: Method) -> str:
    """The knob value of m's resources row: the middle one, or the nearest that ran."""
    ran = [v for v in m.values if v in result["runs"].get(m.name, {})]
    return min(ran, key=lambda v: abs(m.values.index(v) - len(m.values) // 2)) if ran else ""


def every(a: list[float], b: list[float], above=True) -> bool:
    """a above (or below) b on every seed both have."""
    return bool(a) and all((x > y) == above for x, y in zip(a, b))


def verdict(holds: bool, fails: bool = None) -> str:
    """'holds', 'does not hold', or 'mixed' (neither on every seed)."""
    fails = (not holds) if fails is None else fails
    return "holds" if holds else "does not hold" if fails else "mixed"


def resources(result: dict) -> dict[str, dict]:
    """Per method, at its middle knob value, per seed: what the resources table shows. PPO's
    include its reward model's stage (peak memory: the larger; time: the sum); models: the
    distinct sets of weights alive as training started, measured by the script."""
    out = {}
    for m in METHODS:
        v = middle(result, m)
        runs = result["runs"].get(m.name, {}).get(v, {})
        rm = m is PPO
        out[m.name] = {
            "value": v,
            "models": [at(r, "log:first:models_in_memory") for r in runs.values()],
            "peak_mb": [max(at(r, f"{m.stage}/peak_memory_mb"),
                            at(r, "rm/peak_memory_mb") if rm else 0) for r in runs.values()],
            "dt": [r.get("log", {}).get("median_dt", math.nan) for r in runs.values()],
            "steps": [r.get("log", {}).get("steps", math.nan) for r in runs.values()],
            "train_seconds": [at(r, f"{m.stage}/train_seconds") - path_seconds(r) +
                              (at(r, "rm/train_seconds") if rm else 0) for r in runs.values()]}
    return out


def path_seconds(run: dict) -> float:
    """The seconds a run spent measuring its path (--eval_every), not training."""
    return sum(p["seconds"] for p in run.get("path", []))


def points(result: dict, name: str, values=None, extras=()) -> list[dict]:
    """A method's runs as points {label, kl: [per seed], reward: [per seed]}: at each knob
    value, then the extra runs named (its learning-rate runs)."""
    m = next(m for m in METHODS if m.name == name)
    out = [{"label": f"{m.knob} {v}", "kl": list(of(result, m, v, "kl_to_ref").values()),
            "reward": list(of(result, m, v, "reward_mean").values())}
           for v in values or m.values if v in result["runs"].get(name, {})]
    return out + [{"label": x, "kl": list(by_seed(result, x, "", f"{m.stage}/kl_to_ref").values()),
                   "reward": list(by_seed(result, x, "", f"{m.stage}/reward_mean").values())}
                  for x in extras if x in result["runs"]]


def envelope(pts: list[dict]) -> list[dict]:
    """The upper envelope of points on the mean reward against mean KL: those that no other
    point beats, with as much reward or more at as little KL or less. In order of KL."""
    mean_of = [(mean(p["kl"]), mean(p["reward"]), p) for p in pts]
    kept = [p for k, r, p in mean_of if not any(k2 <= k and r2 >= r and (k2, r2) != (k, r)
                                                  for k2, r2, _ in mean_of)]
    return sorted(kept, key=lambda p: mean(p["kl"]))


def distance(result: dict, m: Method, value: str, key: str) -> list[float]:
    """A run's distance from the ceiling, per seed: "gap" (R*(KL) - R) or "efficiency"
    (KL*(R) / KL), measured from the seed's own ceiling (experiments/measure.py)."""
    return [d[m.name][value][key] for d in result.get("distance", {}).values()
            if value in d.get(m.name, {})]
