"""A run's two ends, around its training loop. What every script's main does first
(start_run): the --smoke settings, the output folder checked, the random generators seeded,
the device, the memory the process holds before any model. And last (finish): the eval
file, the before/after table, where everything went.

Skip this file on a first read.
"""

import dataclasses
import json
import random
import resource
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from model import read_checkpoint
from plumbing.distributed import setup_device

# Settings that change where or how a run goes, not what it computes: a checkpoint
# written with other values of these is the same run's.
HOW_NOT_WHAT = {"out_dir", "overwrite", "device", "resume", "compile", "save_every", "stage",
                "eval_every"}


def start_run(cfg, smoke: dict, outputs: list[str]):
    """What every main does first: (cfg with the --smoke settings if asked, the device, the
    peak memory so far: the runtime's, before any model, which finish() reports beside the
    run's peak), the random generators seeded, and OUT_DIR checked before any work
    (claim_outputs)."""
    if cfg.smoke:
        cfg = smoke_config(cfg, smoke)
    claim_outputs(cfg, outputs)
    set_seed(cfg.seed)
    device = setup_device(cfg.device)
    return cfg, device, peak_memory_mb(device)


def smoke_config(cfg, smoke: dict):
    """cfg with the --smoke settings, except the flags given a non-default value. (A config
    whose defaults depend on a field, as DPOConfig's on --loss, names it in DEFAULTS_FROM.)"""
    keys = {k: getattr(cfg, k) for k in getattr(cfg, "DEFAULTS_FROM", ())}
    defaults = dataclasses.asdict(type(cfg)(**keys))
    return dataclasses.replace(cfg, **{k: v for k, v in smoke.items()
                                      if getattr(cfg, k) == defaults[k]})


def claim_outputs(cfg, outputs: list[str]) -> None:
    """Refuse, before minutes of work, an OUT_DIR that is a file, and a run that would
    replace OUT_DIR/<output> written by a run with other settings (unless --overwrite):
    `--beta 0.5` must not silently replace the default run's dpo.pt. The same command
    run again may replace its own files."""
    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out_dir {out} is a file, not a folder")
    if cfg.overwrite:
        return
    for name in outputs:
        path = out / name
        if not path.is_file():
            continue
        theirs = read_checkpoint(path).get("train_config", {})
        changed = [k for k, v in dataclasses.asdict(cfg).items()
                   if k not in HOW_NOT_WHAT and k in theirs and theirs[k] != v]
        if changed:
            diff = ", ".join(f"--{k} {theirs[k]!r} -> {getattr(cfg, k)!r}" for k in changed[:4])
            raise ValueError(f"{path} was written by a run with other settings ({diff}). To keep "
                             "both, give this run a folder of its own that reads what it needs "
                             f"from {out}:\n    {own_folder_command(cfg, changed)}\nor pass "
                             "--overwrite to replace it")


def own_folder_command(cfg, changed: list[str]) -> str:
    """This command line again with an --out_dir of its own (named after the changed settings,
    inside OUT_DIR) and the inputs it read from OUT_DIR named (cfg.inputs())."""
    argv, keep = sys.argv[1:], []
    for i, a in enumerate(argv):          # drop --out_dir X and --overwrite
        if a not in ("--out_dir", "--overwrite") and (i == 0 or argv[i - 1] != "--out_dir"):
            keep.append(a)
    name = "_".join(f"{k}{getattr(cfg, k)}" for k in changed[:3])
    inputs = [f"--{k} {Path(cfg.out_dir) / f}" for k, f in cfg.inputs().items()
              if not getattr(cfg, k)]
    return " ".join([interpreter(), Path(sys.argv[0]).name, *map(shlex.quote, keep),
                     f"--out_dir {Path(cfg.out_dir) / name}", *inputs])


def interpreter() -> str:
    """The Python this run was started with, as a command line would name it: .venv/bin/python
    when it lies under the working folder, else python."""
    try:
        return str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return "python"


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device) -> float:
    """Peak memory of this process: the GPU's allocations on CUDA, else the resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10     # KiB on Linux


def finish(out_dir, stage: str, columns: dict[str, dict], title: str, *, train_seconds: float,
           device, memory_at_start: float, also_saved: dict | None = None) -> dict:
    """The end of a run: the last column (the stage's own metrics) gets train_seconds, the
    peak memory and the memory at start (start_run's), and is saved as
    OUT_DIR/<stage>_eval.json with also_saved (numbers the table shows in another column);
    the table is printed, saying where the stage's files went. Returns the stage's metrics."""
    metrics = list(columns.values())[-1]
    metrics.update(train_seconds=train_seconds, peak_memory_mb=peak_memory_mb(device),
                   memory_at_start_mb=memory_at_start)
    save_json(Path(out_dir) / f"{stage}_eval.json", {**metrics, **(also_saved or {})})
    print_table(columns, title)
    saved = [f"{stage}{end}" for end in (".pt", "_eval.json", "_samples.jsonl", "_metrics.jsonl")
             if (Path(out_dir) / f"{stage}{end}").exists()]
    print(f"saved in {out_dir}/: {', '.join(saved)} (peak memory "
          f"{metrics['peak_memory_mb']:.0f} MiB, "
          f"{'allocated on the GPU' if device.type == 'cuda' else 'resident, whole process'})")
    return metrics


def hooked(**functions) -> str:
    """A table title's note of the functions main() was given in place of losses.py's (a
    notebook's edited loss), so that a run with a hook says so: "" without one."""
    given = [f"{k}={getattr(f, '__name__', 'given')}" for k, f in functions.items() if f]
    return f", with {', '.join(given)} passed to main()" if given else ""


def print_table(columns: dict[str, dict], title: str = "") -> str:
    """Rows = metric names, one column per run (e.g. {"sft": {...}, "dpo": {...}})."""
    names = list(dict.fromkeys(k for col in columns.values() for k in col))
    width = max(len(n) for n in names) + 2
    cw = max(12, *(len(c) + 2 for c in columns))                          # column width
    lines = [title] if title else []
    lines.append(" " * width + "".join(f"{c:>{cw}}" for c in columns))
    for n in names:
        cells = [columns[c].get(n) for c in columns]
        lines.append(f"{n:<{width}}" + "".join(
            f"{v:>{cw}.3f}" if isinstance(v, float) else f"{'' if v is None else v:>{cw}}"
            for v in cells))
    text = "\n".join(lines)
    print(text)
    sys.stdout.flush()
    return text


def save_json(path, obj) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2) + "\n")
