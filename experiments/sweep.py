"""Run training scripts over seeds (and a small grid of flags); report mean +- std.

    python experiments/sweep.py --seeds 0-4 train_sft.py train_dpo.py train_grpo.py   # the default pipeline
    python experiments/sweep.py --seeds 0-4 train_sft.py train_dpo.py --grid loss=ipo,simpo
    python experiments/sweep.py --seeds 0-2 --jobs 2 "train_dpo.py --label_temperature 0.1" --grid beta=0.03,0.3

Each positional argument is one step: a script and its flags, in quotes if it has
any. A run is one seed (and one grid point): its steps run in order, as separate
processes, each given --seed S and an --out_dir, so every script finds the
checkpoints of the steps before it (train_dpo.py reads OUT_DIR/sft.pt), and
--overwrite (the stamps below decide when a step must run again).

The grid's flags go to the last step only. The steps before the last run once per
seed, in OUT/seed<S>, shared by every run of that seed. The last step runs in a
folder of its own, named after it and its flags (OUT/seed<S>/train_dpo_loss_ipo),
holding copies of the files the steps before it wrote: the IPO and SimPO runs of a
seed share its SFT checkpoint, and a run never overwrites another's files. A step
that already ran with the same command, after the same steps (a stamp in its
folder's .sweep/ says so), is not run again: a later sweep into the same --out
with the same first steps reuses what an earlier one trained. A stamp records the
command, not the code: after changing a script, sweep into a new --out. In a
step's flags, {out_dir} stands for its folder: "train_sft.py --stage sft
--init_from {out_dir}/sft.pt" trains on from the seed's SFT checkpoint; {seed_dir} for the
seed's shared folder, OUT/seed<S>: "train_dpo.py --init_from {seed_dir}/sft.pt" starts from
the seed's SFT model itself, so the runs that do share what is kept beside it.

Every <stage>_eval.json a step writes is read back: the table has one row per
metric, with mean +- std (sample std, n - 1), min, max and n over the runs, each
run's value beside it, one table per grid point, and the seconds each step took.
It is printed and saved as OUT/<last step and grid>.md and .json (with every run's
numbers). Each step's output goes to <script>.log in its folder. With --jobs N, N
runs go at once, each with cores/N threads (OMP_NUM_THREADS, unless set). Standard
library only: it reads no tensors.
"""

import argparse
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]      # the repository: the scripts, run from there


@dataclass
class Step:
    """One script invocation within a run, and the folder it runs in."""
    argv: list[str]               # script and its own flags, without --seed and --out_dir
    seed: int
    folder: Path
    after: "Step | None"          # the step before it in the run (its files come first)
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False

    @property
    def key(self) -> str:
        """Same command, same seed, same steps before it: same files, so it can be reused."""
        chain = [] if self.after is None else [self.after.key]
        return hashlib.sha1(json.dumps(chain + [self.seed] + self.argv).encode()).hexdigest()[:12]

    @property
    def seed_dir(self) -> Path:
        """OUT/seed<S>: the folder of the steps a seed's runs share."""
        return self.folder if self.folder.name == f"seed{self.seed}" else self.folder.parent

    @property
    def stamp(self) -> Path:
        return self.folder / ".sweep" / f"{Path(self.argv[0]).stem}-{self.key}.json"


def parse_seeds(words: list[str]) -> list[int]:
    """'0-4' or '0 1 2' (or both) -> [0, 1, 2, 3, 4]."""
    seeds = []
    for w in words:
        lo, _, hi = w.partition("-")
        if not (lo.isdigit() and (not hi or hi.isdigit())):
            raise ValueError(f"--seeds: '{w}' is not a seed or a range like 0-4")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return list(dict.fromkeys(seeds))


def parse_grid(items: list[str]) -> list[dict[str, str]]:
    """['beta=0.1,0.3', 'loss=dpo,ipo'] -> every combination as {flag: value}; [{}] if none."""
    axes = []
    for item in items:
        name, _, values = item.partition("=")
        if not name or not values:
            raise ValueError(f"--grid: '{item}' is not FLAG=V1,V2,...")
        axes.append([(name.lstrip("-"), v) for v in values.split(",")])
    return [dict(point) for point in itertools.product(*axes)]


def point_name(point: dict[str, str]) -> str:
    return "_".join(f"{k}{v}" for k, v in point.items())


def folder_name(argv: list[str]) -> str:
    """A run's own folder, named after its last step: train_dpo_loss_ipo_beta_0.3."""
    words = [Path(argv[0]).stem] + [a.lstrip("-") for a in argv[1:]]
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(words))


def plan(chains: list[list[list[str]]], seeds: list[int], out: Path):
    """(runs, steps to execute) for every chain of steps at every seed: a run is (seed, the
    chain's index, its last step). A chain's steps before the last run in OUT/seed<S>, and
    chains that begin alike share those steps (one Step, run once). Steps are ordered stage
    by stage (every seed's first step, then every seed's second...), so parallel workers
    start different seeds instead of waiting on one seed's chain."""
    made, runs, todo = {}, [], []
    for seed in seeds:
        shared = out / f"seed{seed}"
        for c, chain in enumerate(chains):
            prev = None
            for depth, argv in enumerate(chain):
                last = depth == len(chain) - 1
                step = Step(argv, seed, shared / folder_name(argv) if last else shared, prev)
                if (step.folder, step.key) not in made:
                    made[step.folder, step.key] = step
                    todo.append((depth, step))
                prev = made[step.folder, step.key]
            runs.append((seed, c, prev))
    return runs, [step for _, step in sorted(todo, key=lambda t: t[0])]


def files_of(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in folder.iterdir() if p.is_file()} \
        if folder.is_dir() else {}


def copy_earlier_files(step: Step) -> None:
    """Give a run's own folder copies of the files the steps before it wrote (copies, not
    links: a script that rewrites a file in place must not change the shared one)."""
    s = step.after
    if s is None or s.folder == step.folder:
        return
    step.folder.mkdir(parents=True, exist_ok=True)
    while s is not None:
        for name in json.loads(s.stamp.read_text())["files"]:
            if not (step.folder / name).exists():
                shutil.copy2(s.folder / name, step.folder / name)   # keeps mtimes
        s = s.after


def execute(step: Step, threads: int, log) -> None:
    """Run one step (after the one before it), unless its stamp says it already ran."""
    if step.after is not None:
        step.after.done.wait()
        if not step.after.ok:
            log(f"skip  seed {step.seed} {' '.join(step.argv)} (an earlier step failed)")
            step.done.set()
            return
    try:
        if step.stamp.exists() and all((step.folder / name).exists() for name in
                                       json.loads(step.stamp.read_text())["files"]):
            log(f"reuse seed {step.seed} {' '.join(step.argv)} ({step.folder})")
            step.ok = True
            return
        copy_earlier_files(step)
        step.folder.mkdir(parents=True, exist_ok=True)
        before = files_of(step.folder)
        cmd = [sys.executable, str(ROOT / step.argv[0]),
               *(a.replace("{out_dir}", str(step.folder)).replace("{seed_dir}", str(step.seed_dir))
                 for a in step.argv[1:]),
               "--seed", str(step.seed), "--out_dir", str(step.folder),
               "--overwrite"]      # the stamps, not the scripts, decide what is stale here
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("OMP_NUM_THREADS", str(threads))
        log_path = step.folder / f"{Path(step.argv[0]).stem}.log"
        t0 = time.time()
        with open(log_path, "w") as f:
            status = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    cwd=ROOT).returncode
        seconds = time.time() - t0
        if status != 0:
            tail = log_path.read_text().strip().splitlines()[-5:]
            log(f"FAIL  seed {step.seed} {' '.join(step.argv)}: exit {status}, see {log_path}\n"
                + "\n".join("      " + line for line in tail))
            return
        after = files_of(step.folder)
        made = sorted(n for n, t in after.items() if before.get(n) != t)
        step.stamp.parent.mkdir(exist_ok=True)
        step.stamp.write_text(json.dumps({"argv": step.argv, "seed": step.seed,
                                          "seconds": seconds, "files": made}, indent=1))
        step.ok = True
        log(f"done  seed {step.seed} {' '.join(step.argv)} in {seconds:.0f} s")
    except OSError as e:          # a folder or file sweep.py itself could not write or read
        log(f"FAIL  seed {step.seed} {' '.join(step.argv)}: {e}")
    finally:
        step.done.set()


def run_steps(todo: list[Step], jobs: int) -> None:
    """Execute the steps, `jobs` at a time, each with cores / jobs threads; a step whose
    stamp says it already ran is reused. Ctrl-C stops every step under way (they save)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    lock, finished = threading.Lock(), [0]

    def log(message):
        with lock:
            finished[0] += 1
            print(f"[{finished[0]}/{len(todo)}] {message}", flush=True)

    print(f"{len(todo)} steps, {jobs} at a time, {threads} threads each", flush=True)
    # A step waits for the one before it, so submitting in plan order never deadlocks:
    # every step ahead of a waiting one was handed to a worker first.
    pool = ThreadPoolExecutor(jobs)
    for step in todo:
        pool.submit(execute, step, threads, log)
    try:
        pool.shutdown(wait=True)
    except KeyboardInterrupt:  # the scripts under way got it too: they save and exit
        pool.shutdown(wait=True, cancel_futures=True)
        sys.exit("interrupted: the steps that finished are stamped; the same command "
                 "reuses them")


def run_metrics(last: Step) -> dict[str, float]:
    """Every metric of every eval file the run's steps wrote, as 'stage/metric' (where two
    steps write the same file, the later one's), each step's seconds as
    'seconds/<script>', and their sum as 'seconds/total'; in the order of the steps."""
    chain = [last]
    while chain[-1].after is not None:
        chain.append(chain[-1].after)
    metrics, total = {}, 0.0
    for step in reversed(chain):
        stamp = json.loads(step.stamp.read_text())
        metrics[f"seconds/{Path(step.argv[0]).stem}"] = stamp["seconds"]
        total += stamp["seconds"]
        for name in stamp["files"]:
            if name.endswith("_eval.json"):
                for k, v in json.loads((step.folder / name).read_text()).items():
                    if isinstance(v, (int, float)):
                        metrics[f"{name.removesuffix('_eval.json')}/{k}"] = v
    metrics["seconds/total"] = total
    return metrics


def summarize(values: list[float]) -> dict[str, float]:
    """mean, sample std (0 for one run), min, max and n, over the finite values (a metric a
    run could not measure is NaN in its eval file)."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def table(runs: dict[str, dict[str, float]], summary: dict[str, dict], title: str) -> str:
    """A markdown table: one row per metric, mean +- std, min, max, n, then each run."""
    lines = [f"### {title}", "",
             "| metric | mean ± std | min | max | n | " + " | ".join(runs) + " |",
             "|---" * (5 + len(runs)) + "|"]
    for name, s in summary.items():
        f = ".1f" if name.startswith("seconds/") else ".3f"
        cells = [f"{s['mean']:{f}} ± {s['std']:{f}}", f"{s['min']:{f}}", f"{s['max']:{f}}",
                 str(s["n"])] + [format(m[name], f) if name in m else "" for m in runs.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("steps", nargs="+", help="a script and its flags, e.g. "
                        "\"train_dpo.py --loss ipo\"; run in this order")
    parser.add_argument("--seeds", nargs="+", default=["0-2"],
                        help="seeds and ranges, e.g. 0-4 or 0 3 7 (default: 0-2)")
    parser.add_argument("--grid", nargs="*", default=[], metavar="FLAG=V1,V2",
                        help="flag values for the last step; every combination is a run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--out", default="sweeps/sweep",
                        help="folder of the runs and the tables (default: sweeps/sweep)")
    args = parser.parse_args(argv)
    try:
        steps = [shlex.split(s) for s in args.steps]
        for s in steps:
            if not (ROOT / s[0]).is_file():
                raise ValueError(f"no script {s[0]} in {ROOT}")
            if {"--seed", "--out_dir"} & set(s):
                raise ValueError(f"'{' '.join(s)}': sweep.py sets --seed and --out_dir itself")
        seeds, grid = parse_seeds(args.seeds), parse_grid(args.grid)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    except ValueError as e:
        sys.exit(f"error: {e}")

    out = Path(args.out).resolve()       # the scripts run with the repository as cwd
    if out.exists() and not out.is_dir():
        sys.exit(f"error: --out {out} is a file, not a folder")
    flags = [[a for k, v in point.items() for a in (f"--{k}", v)] for point in grid]
    runs, todo = plan([steps[:-1] + [steps[-1] + f] for f in flags], seeds, out)
    print(f"{len(runs)} runs ({len(seeds)} seeds x {len(grid)} grid points) in {out}",
          flush=True)
    t0 = time.time()
    run_steps(todo, args.jobs)
    command = "python experiments/sweep.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if argv is None else "sweep.main(" + repr(argv) + ")"
    text = [f"`{command}`: {time.time() - t0:.0f} s wall, {args.jobs} at a time", ""]
    results = {}
    for i, point in enumerate(grid):
        per_run = {f"seed {seed}": run_metrics(last) for seed, c, last in runs
                   if c == i and last.ok}
        names = dict.fromkeys(k for m in per_run.values() for k in m)
        summary = {k: summarize([m[k] for m in per_run.values() if k in m]) for k in names}
        results[point_name(point) or "all"] = {"runs": per_run, "summary": summary}
        if per_run:
            title = " ".join(args.steps + [point_name(point)]).strip()
            text += [table(per_run, summary, f"{title} (n = {len(per_run)} seeds)"), ""]
    print("\n".join(text))
    name = folder_name(steps[-1] + args.grid)       # one pair of files per sweep command
    (out / f"{name}.md").write_text("\n".join(text))
    (out / f"{name}.json").write_text(json.dumps({"command": command, "results": results},
                                                 indent=1))
    print(f"tables: {out / name}.md and .json")
    failed = sum(not last.ok for _, _, last in runs)
    if failed:
        sys.exit(f"error: {failed} of {len(runs)} runs failed (see the FAIL lines above)")
    return results


if __name__ == "__main__":
    main()
