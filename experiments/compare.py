"""Every method on one task: the reward-vs-KL frontier, the resources table, the claims.

True reward against KL to the SFT model for every method, what each costs, and the claims
of the two articles this project grew from, each against a measurement.

    python experiments/compare.py            # the full run: seeds 0-2, 2 runs at a time
    python experiments/compare.py --seeds 0-4 --jobs 2
    python experiments/compare.py --smoke    # one seed, seconds-long runs (the tests run it)
    python experiments/compare.py --comparisons --eval_prompts 2048 --out sweeps/comparisons
                                             # the comparison claims, on 8x the held-out prompts

What runs, from the same SFT checkpoint of each seed (through sweep.py's planner and runner:
one process and one folder per run, each seed's SFT model trained once, finished runs
reused, so a second call with the same --out only re-reads them and redraws):
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
On 256 held-out prompts, twice the standard error of a paired difference in true reward is
0.025 to 0.09, coarser than the 0.02 a comparison declares: --eval_prompts evaluates every run
(and the SFT model, again, in a run of its own) on more, and --comparisons runs only what the
comparison claims read.
The pieces: methods.py (what runs), measure.py (what is measured here), claims.py (each
claim and its rule), report.py (the plot and the tables).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from experiments import sweep
from experiments.claims import COMPARISONS
from experiments.measure import measure
from experiments.methods import chains, memory_chains, stage_of
from experiments.report import SMOKE_BANNER, plot, plot_regret, report
from experiments.results import Log, Results, Run

ROOT = Path(__file__).resolve().parents[1]


def run_all(smoke: bool, seeds: list[int], out: Path, jobs: int, eval_prompts: int | None = None,
            comparisons: list[str] | None = None) -> Results:
    """Train (or reuse) every run; Results with every run that finished (its eval numbers,
    its metrics file in brief, its path if it has one), each seed's SFT model's eval, and the
    memory each memory run's process added to its start. comparisons: only the runs these
    comparison claims read (claims.COMPARISONS by name; [] for all of them), and no memory
    runs."""
    runs_of, memory_of = chains(smoke, eval_prompts), memory_chains(smoke)
    if comparisons is not None:
        arms = {arm for c in COMPARISONS if c.name in comparisons or not comparisons
                for arm in (c.a, c.b)} | {("sft", "")}
        runs_of, memory_of = {k: c for k, c in runs_of.items() if k in arms}, {}
    keys = list(runs_of)
    runs, todo = sweep.plan(list(runs_of.values()), seeds, out)
    memory_runs, memory_todo = sweep.plan(list(memory_of.values()), seeds, out / "memory")
    print(f"{len(runs)} runs ({len(keys)} per seed x {len(seeds)} seeds) and {len(memory_runs)} "
          f"memory runs in {out}", flush=True)
    sweep.run_steps(todo + memory_todo, jobs)
    results = Results()
    for seed, c, last in runs:
        name, value = keys[c]
        if not last.ok:
            results.failed.append(f"{name} {value} seed {seed}")
            continue
        stage = stage_of(last.argv)
        log, path = (last.folder / f"{stage}_{kind}.jsonl" for kind in ("metrics", "path"))
        results.runs.append(Run(method=name, knob=value, seed=seed, stage=stage,
                                numbers=sweep.run_metrics(last),   # (SFT_EVAL logs no step)
                                log=read_log(log) if log.exists() and log.stat().st_size else None,
                                path=read_lines(path) if path.exists() else [],
                                folder=str(last.folder.relative_to(out))))
    for seed in sorted({str(seed) for seed, _, last in runs if last.ok}, key=int):
        if eval_prompts and seed not in results.runs_of("sft"):   # its --eval_prompts run
            continue                      # failed: the seed goes unmeasured (its arms' prompts
        folder = out / results.sft_folder(seed)                  # would differ)
        results.sft[seed] = json.loads((folder / "sft_eval.json").read_text())
    names = list(memory_of)
    for seed, c, last in memory_runs:       # what each method's process added to its start
        if last.ok:
            m = sweep.run_metrics(last)
            results.memory.setdefault(names[c], {})[str(seed)] = max(
                m[k] - m[k.replace("peak_memory_mb", "memory_at_start_mb")] for k in m
                if k.endswith("/peak_memory_mb") and not k.startswith("sft/"))
        else:
            results.failed.append(f"memory {names[c]} seed {seed}")
    return results


def load_report(path: str) -> Results:
    """The Results a compare.json holds, or one line saying what is wrong with the file."""
    if not Path(path).is_file():
        sys.exit(f"error: {path}: no such file (compare.py writes compare.json in its --out)")
    try:
        return Results.load(path)
    except json.JSONDecodeError as e:
        sys.exit(f"error: {path}: not JSON ({e})")
    except (TypeError, KeyError, AttributeError) as e:
        sys.exit(f"error: {path}: not a compare.json of this version ({type(e).__name__}: {e})")


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_log(path: Path, window: int = 10) -> Log:
    """A metrics file in brief: the first logged step (step 0), the means of each metric over
    `window` logged steps around the middle and at the end (one batch's numbers are noisy),
    the median seconds per step (step 0 left out: it includes warm-up), the steps."""
    lines = read_lines(path)
    mid = len(lines) // 2

    def average(rows):
        return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]
                if all(isinstance(r.get(k), (int, float)) for r in rows)}
    return Log(first=lines[0], middle=average(lines[max(0, mid - window // 2):][:window]),
               last=average(lines[-window:]),
               median_dt=statistics.median(r["dt"] for r in lines[1:] or lines),
               steps=lines[-1]["step"] + 1)


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
    parser.add_argument("--eval_prompts", type=int, default=None, metavar="N",
                        help="held-out prompts every run, the SFT model and the ceiling are "
                        "evaluated on (default: each script's, 256; 16 with --smoke; at most "
                        "2107, and past about 500 the task mix shifts: data/world.py)")
    parser.add_argument("--comparisons", nargs="*", default=None, metavar="NAME",
                        help="only the runs the comparison claims read (those named, as in "
                        "compare.json's noise, or all), and only their table (no memory runs, "
                        "no plot: --figure is not drawn)")
    parser.add_argument("--report", metavar="COMPARE_JSON", default=None,
                        help="train and measure nothing: draw the plot and write the report "
                        "from a compare.json (e.g. docs/compare.json) into --out (default: its "
                        "folder)")
    args = parser.parse_args(argv)
    if args.report:
        return draw(load_report(args.report), Path(args.out or Path(args.report).parent),
                    args.figure and Path(args.figure))
    try:
        seeds = sweep.parse_seeds(args.seeds or (["0"] if args.smoke else ["0-2"]))
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if args.eval_prompts is not None and args.eval_prompts < 16:
            raise ValueError(f"--eval_prompts must be >= 16, got {args.eval_prompts}")
        unknown = set(args.comparisons or []) - {c.name for c in COMPARISONS}
        if unknown:
            raise ValueError(f"--comparisons: no comparison {', '.join(sorted(unknown))} "
                             f"(they are: {', '.join(c.name for c in COMPARISONS)})")
    except ValueError as e:
        sys.exit(f"error: {e}")
    out = Path(args.out or ("sweeps/compare_smoke" if args.smoke else "sweeps/compare")).resolve()
    if out.exists() and not out.is_dir():
        sys.exit(f"error: --out {out} is a file, not a folder")
    t0 = time.time()
    results = run_all(args.smoke, seeds, out, args.jobs, args.eval_prompts, args.comparisons)
    if not results.sft:
        sys.exit("error: no run finished (see the FAIL lines above)")
    print("measuring the ceiling, best-of-N, the promised points, GRPO's group baseline and "
          "the SFT control's KL", flush=True)
    # the prompts the runs were evaluated on, counted (a smoke run puts its own 16 in place of
    # a flag left at the scripts' default)
    samples = out / results.sft_folder(next(iter(results.sft))) / "sft_samples.jsonl"
    results.eval_prompts = len(samples.read_text().splitlines())
    results.comparisons_only = args.comparisons is not None
    measure(results, [int(s) for s in results.sft], out, args.smoke)
    results.date, results.seconds, results.smoke = time.strftime("%Y-%m-%d"), time.time() - t0, \
        args.smoke
    results.machine = f"torch {torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU'}"
    results.save(out / "compare.json")
    figure = Path(args.figure) if args.figure else \
        None if args.smoke or results.comparisons_only else ROOT / "docs" / "frontier.png"
    return draw(results, out, figure)


def draw(results: Results, out: Path, figure: Path | None) -> Results:
    """The plots (OUT/frontier.png and regret.png, and beside `figure`) and the report
    (OUT/compare.md, and on the terminal, where a --smoke report's banner comes again at the
    end, to be seen). A --comparisons run's results: no plots (most methods did not run)."""
    figures = [] if results.comparisons_only else \
        [out / "frontier.png", *([figure] if figure else [])]
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        plot(results, figures)
        plot_regret(results, [f.with_name("regret.png") for f in figures])
    text = report(results)
    (out / "compare.md").write_text(text + "\n")
    print(text)
    print(f"\nthe report: {out / 'compare.md'}; the plot: "
          f"{', '.join(map(str, figures)) or 'none'}")
    if results.smoke:                                   # the banner, first in the file, and
        print("\n" + SMOKE_BANNER)                     # last on the terminal
    return results


if __name__ == "__main__":
    main()
