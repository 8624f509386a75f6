"""Plumbing the three training scripts share: flags from a config dataclass, the
optimizer and its schedule, the training loop with its checkpoints, resume, Ctrl-C
and NaN guard, the metrics file, and the before/after table."""

import argparse
import contextlib
import copy
import dataclasses
import gc
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model import first_line, get_device, load_checkpoint, read_checkpoint, save_checkpoint


def parse_config(config_cls, description: str, argv=None):
    """An argparse layer over a config dataclass: one flag per field, help from metadata."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(config_cls):
        kwargs = {"default": f.default, "help": f.metadata.get("help", "")}
        if f.type in (bool, "bool"):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str}.get(f.type, f.type)
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        parser.add_argument("--" + f.name, **kwargs)
    return config_cls(**vars(parser.parse_args(argv)))


def run_cli(main, config_cls, doc: str) -> None:
    """Parse flags into config_cls and call main. Bad input (ValueError, which DataError
    and CheckpointError subclass) ends in one line and exit status 1, not a traceback;
    a stopped run (Ctrl-C, a non-finite loss) in its message and its own status."""
    try:
        main(parse_config(config_cls, doc.split("\n")[0]))
        leave_process_group()
    except ValueError as e:
        sys.exit(f"error: {e}")
    except TrainingStopped as e:
        print(e, file=sys.stderr)
        sys.exit(e.status)
    except KeyboardInterrupt:
        print("interrupted (nothing saved since the last checkpoint)", file=sys.stderr)
        sys.exit(130)


def flag(default, help: str, **extra):
    """A config field with its --help text; above=x or at_least=x bound its value."""
    return dataclasses.field(default=default, metadata={"help": help, **extra})


@dataclasses.dataclass
class RunConfig:
    """The flags every script shares. Bounds given to flag() are checked on creation."""
    out_dir: str = flag("out", "folder for checkpoints, metrics, samples and eval")
    device: str = flag("auto", "cuda, mps or cpu (auto picks in that order)")
    seed: int = flag(0, "random seed")
    smoke: bool = flag(False, "a seconds-long run with a tiny setup, for tests")
    resume: bool = flag(False, "continue each stage from OUT_DIR/<stage>_state.pt")
    compile: bool = flag(False, "torch.compile the model for training (pays off on a GPU "
                                "after a warm-up; on a CPU it needs a C++ compiler)")
    save_every: int = flag(250, "save a resumable state every this many steps (0: only at "
                                "the end and on Ctrl-C)", at_least=0)
    grad_clip: float = flag(1.0, "clip the gradient norm to this", above=0)
    eval_prompts: int = flag(256, "held-out prompts in the final evaluation", at_least=1)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None:
                continue
            if "above" in meta and not value > meta["above"]:
                raise ValueError(f"--{f.name} must be > {meta['above']}, got {value}")
            if "at_least" in meta and not value >= meta["at_least"]:
                raise ValueError(f"--{f.name} must be >= {meta['at_least']}, got {value}")


@dataclasses.dataclass
class AlignConfig(RunConfig):
    """The flags every alignment script (DPO, GRPO) adds to RunConfig."""
    init_from: str = flag("", "SFT checkpoint (default: OUT_DIR/sft.pt)")
    weight_decay: float = flag(0.0, "AdamW weight decay", at_least=0)


def load_policy_and_reference(cfg: AlignConfig, device):
    """(policy, frozen reference, checkpoint path): two copies of the SFT checkpoint."""
    init = Path(cfg.init_from or Path(cfg.out_dir) / "sft.pt")
    policy, ckpt = load_checkpoint(init, device)
    if ckpt.get("stage") == "pretrain":
        raise ValueError(f"{init} is a pretraining checkpoint; alignment starts from an SFT "
                         f"one (train_sft.py writes {Path(cfg.out_dir) / 'sft.pt'})")
    if ckpt.get("stage") != "sft":
        print(f"warning: {init} is a '{ckpt.get('stage')}' checkpoint, not SFT; alignment "
              "expects an SFT model as its start and its reference")
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    return policy, reference, init


def smoke_config(cfg, smoke: dict):
    """cfg with the --smoke settings, except the flags given a non-default value."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in smoke.items()
                                      if getattr(cfg, k) == defaults[k]})


def start_run(cfg: RunConfig, smoke: dict):
    """What every main does first: (cfg with the --smoke settings if asked, the device),
    the random generators seeded."""
    if cfg.smoke:
        cfg = smoke_config(cfg, smoke)
    set_seed(cfg.seed)
    return cfg, setup_device(cfg.device)


# ------------------------------------------------------------------ several processes
# Under `torchrun --nproc_per_node=N`, every process draws the same global batch (same
# seed) and trains on its own slice of it; DDP averages the gradients, so N processes
# take the steps one process would take on the whole batch. Rank 0 logs and saves.

def setup_device(name: str) -> torch.device:
    """The device to train on; first joins the process group when torchrun started
    several processes (NCCL on CUDA, each process on the GPU of its LOCAL_RANK; gloo on CPU)."""
    device = get_device(name)
    if device.type == "cuda":  # TF32 tensor cores for the fp32 matmuls autocast leaves
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def leave_process_group() -> None:
    """At the end of a run under torchrun: every process waits for the others (rank 0
    may still be evaluating and saving), then all tear the group down together, so no
    process closes its connections while another is still using them. gc.collect()
    first frees a DDP wrapper left in a reference cycle, which would hold the group:
    left to the interpreter's exit, the group's gloo worker threads are destroyed there
    and the process can abort ("terminate called without an active exception", as
    pytorch/pytorch PR 179291 describes; our reading of a rare abort, not proven)."""
    if dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def shard(rows):
    """This process's share of a global batch (a list or a tensor; all of it in one process)."""
    if len(rows) % world_size():
        raise ValueError(f"a batch of {len(rows)} does not split evenly over {world_size()} "
                         "processes")
    return rows[dist.get_rank()::world_size()] if dist.is_initialized() else rows


def for_training(model, compile: bool = False):
    """The model wrapped for gradient averaging when there are several processes, and
    compiled if asked (DDP first, then torch.compile, as PyTorch recommends)."""
    net = DistributedDataParallel(model) if world_size() > 1 else model
    return torch.compile(net) if compile else net


def grad_sync(net, now: bool):
    """Under DDP every backward() all-reduces the gradients; in an accumulated step only
    the last micro-batch's needs to (no_sync skips the others)."""
    return contextlib.nullcontext() if now or world_size() == 1 else net.no_sync()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model, learning_rate: float, weight_decay: float, device):
    """AdamW; weight decay on matrices only (not on LayerNorm gains or biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.95),
                             fused=device.type == "cuda")


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to `peak`, then cosine decay to peak/10 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(opt, step: int, total: int, warmup: int, peak: float) -> float:
    """Give every parameter group this step's learning rate (lr_at) and return it."""
    lr = lr_at(step, total, warmup, peak)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def optimizer_step(model, opt, grad_clip: float) -> torch.Tensor:
    """Clip the accumulated gradient's norm, step, clear; returns the norm before clipping."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return grad_norm


class MetricsLog:
    """One JSON object a line: {"step": ..., name: value, ...}, for the notebooks to plot.
    A resumed run keeps the lines before its first step and rewrites the rest."""

    def __init__(self, path, first_step: int = 0):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = [line for line in path.read_text().splitlines()
                if json.loads(line)["step"] < first_step] if first_step and path.exists() else []
        self.file = open(path, "w")
        self.file.writelines(line + "\n" for line in kept)

    def write(self, step: int, metrics: dict) -> None:
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.file.flush()

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TrainingStopped(Exception):
    """A run that stopped early, with the message to print and the exit status to use."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class CtrlC:
    """While active, Ctrl-C asks the loop to stop after the step under way (so it can save
    a consistent state); a second Ctrl-C stops at once."""

    def __enter__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step and saving (Ctrl-C again to quit now)",
              file=sys.stderr)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


def save_state(path, model, opt, gen, cfg, step: int, stage: str) -> None:
    """A resumable checkpoint: the model, the optimizer, the random generators and the step."""
    save_checkpoint(path, model, dataclasses.asdict(cfg), step, stage=stage,
                    optimizer=opt.state_dict(),
                    rng={"torch": torch.get_rng_state(), "batches": gen.get_state()})


def load_state(path, model, opt, gen) -> int:
    """Restore what save_state wrote into model, opt and gen; returns the step to go on from."""
    state = read_checkpoint(path, next(model.parameters()).device)
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"]["batches"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
    except (KeyError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: cannot resume from this state ({first_line(e)})") from None
    print(f"resuming {state['stage']} from step {state['step']} ({path})")
    return state["step"]


def read_back(pending: list, stop: bool, device) -> bool:
    """Turn the tensors in the pending steps' metrics into numbers in place, with one copy
    from the device (each .item() would make the host wait for the GPU to catch up). With
    several processes, one all-reduce averages them and shares the Ctrl-C flag.
    Returns whether any process asked to stop."""
    cells = [(m, k) for _, m in pending for k, v in m.items() if torch.is_tensor(v)]
    flat = torch.stack([m[k].detach().float().to(device) for m, k in cells] +
                       [torch.tensor(float(stop), device=device)])
    if world_size() > 1:
        dist.all_reduce(flat)
        flat /= world_size()
    *values, stop = flat.tolist()
    for (m, k), v in zip(cells, values):
        m[k] = v
    return stop > 0


def reads_lazily(device) -> bool:
    """Whether run_steps reads metrics back only now and then: reading a CPU tensor is
    free, reading a GPU one makes the host wait for the GPU's queue to drain."""
    return device.type != "cpu"


def run_steps(name: str, cfg: RunConfig, model, opt, gen, total: int, step_fn,
              every: int, postfix) -> None:
    """The loop every stage shares: metrics = step_fn(step) for step in [start, total).

    start is 0, or with --resume the step saved in OUT_DIR/<name>_state.pt (model,
    optimizer, random generators). step_fn may return tensors: on a GPU they are read
    back every `every` steps, at saves and at the end (read_back), so the host never
    waits for the GPU in between. Each read adds "dt" (seconds per step since the last
    read, saving excluded), and "tok/s" where step_fn counts "tokens". The state is
    written every --save_every steps, at the end, and on Ctrl-C (seen at the next
    read), which then ends the run with status 130. A non-finite loss ends the run at
    the read that sees it, with nothing saved, so every checkpoint on disk is still
    the last good one.
    """
    state = Path(cfg.out_dir) / f"{name}_state.pt"
    start = 0
    if cfg.resume and state.exists():
        start = load_state(state, model, opt, gen)
    elif cfg.resume:
        print(f"note: --resume: no {state}, so {name} starts from step 0")
    main, device = is_main(), next(model.parameters()).device
    log = MetricsLog(Path(cfg.out_dir) / f"{name}_metrics.jsonl", first_step=start) if main \
        else contextlib.nullcontext()
    bar = tqdm(range(start, total), desc=name, disable=None if main else True, initial=start,
               total=total)
    pending, t_read = [], time.perf_counter()   # steps not yet read back: (step, metrics)
    lazy = reads_lazily(device)
    with CtrlC() as ctrl_c, log:
        for step in bar:
            pending.append((step, step_fn(step)))
            done = step + 1
            save = done == total or (cfg.save_every and done % cfg.save_every == 0)
            # Reading a CPU tensor costs nothing; one process may stop at any step, several
            # read back (and so stop) at the same steps.
            if lazy and not (save or done % every == 0 or (ctrl_c.requested and
                                                            world_size() == 1)):
                continue
            stop = read_back(pending, ctrl_c.requested, device)
            dt = (time.perf_counter() - t_read) / len(pending)
            for s, metrics in pending:
                if not math.isfinite(metrics["loss"]):
                    raise TrainingStopped(f"error: {name}: the loss is {metrics['loss']} at "
                                          f"step {s}; stopped without saving, so the "
                                          f"checkpoints in {cfg.out_dir} are the last good ones")
                metrics["dt"] = dt
                if "tokens" in metrics:
                    metrics["tok/s"] = metrics.pop("tokens") / dt
                if main:
                    report(log, bar, s, metrics, total, every, postfix(metrics))
            pending = []
            if main and (stop or save):
                save_state(state, model, opt, gen, cfg, done, name)
            t_read = time.perf_counter()
            if stop:
                raise TrainingStopped(f"stopped: {name} state at step {done} saved in {state}; "
                                      "run the same command with --resume to go on", 130)


def format_log(step: int, metrics: dict) -> str:
    """One log line per step, fields joined with ' | '."""
    return " | ".join([f"step {step}"] + [f"{k} {v:.4g}" for k, v in metrics.items()])


def report(log, bar, step: int, metrics: dict, total: int, every: int, postfix: str) -> None:
    """One step's metrics: to the metrics file, to the tqdm bar, and, when the bar is
    off (output is not a terminal), as a log line every `every` steps and at the end."""
    log.write(step, metrics)
    bar.set_postfix_str(postfix)
    if bar.disable and (step % every == 0 or step == total - 1):
        print(format_log(step, metrics))


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
