"""The plumbing around a training loop: AdamW and its schedule, and TrainingRun (resume,
Ctrl-C, the NaN guard, metrics read back from the GPU, the metrics file, the progress bar
and the saved states).

Skip this file on a first read. A script's loop stays in the script and calls this:

    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    with TrainingRun("dpo", cfg, policy, opt, rng, steps=cfg.max_steps, log_every=25) as run:
        for step in range(run.start, cfg.max_steps):
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            ...                                   # batch, forward, loss, backward
            optimizer_step(policy, opt, cfg.grad_clip)
            run.log(step, {"loss": loss.detach(), ...})
"""

import contextlib
import dataclasses
import gc
import json
import math
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data.world import eval_prompts
from evaluation import path_point
from model import GPT, first_line, read_checkpoint, save_checkpoint
from plumbing.distributed import all_reduce_mean, is_main, world_size


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


class TrainingStopped(SystemExit):
    """A run that stopped early (Ctrl-C, a non-finite loss), raised once TrainingRun has printed
    why: it ends the process with `status` (130 after Ctrl-C); a notebook or a test can catch
    it. str() is the message."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(status)
        self.message, self.status = message, status

    def __str__(self):
        return self.message


def end_run(message: str, status: int = 1):
    """Print why the run stops, then stop it (TrainingStopped)."""
    print(message, file=sys.stderr)
    raise TrainingStopped(message, status)


class TrainingRun:
    """Around the steps of one stage (its checkpoints are named after `name`):

    - start is 0, or with --resume the step saved in OUT_DIR/<name>_state.pt (model,
      optimizer, random generators), which are restored.
    - The first step's line in the metrics file also holds models_in_memory: the distinct
      sets of transformer weights alive as training starts (the resources table reads it).
    - log(step, metrics) takes the step's metrics, tensors or numbers. On a GPU they are
      read back only every `log_every` steps, at saves and at the end (one copy for all
      pending steps), so the host never waits for the GPU in between; on a CPU every
      step. Each read adds "dt" (seconds per step since the last read), and "tok/s"
      where the metrics count "tokens", then writes each step to OUT_DIR/<name>_metrics.jsonl
      and the progress bar (or, without a terminal, a log line every log_every steps:
      "<name> step N/total, about 3m05s left | ...").
    - With path=(policy, reference[, scorer]) and --eval_every k, every k steps the policy's
      true reward and KL on the held-out prompts (and the scorer's raw score of the same
      answers) go to OUT_DIR/<name>_path.jsonl (its seconds are not counted in dt).
    - The state is saved every --save_every steps, at the end, and on Ctrl-C (seen at
      the next read), which then ends the run with status 130. A non-finite loss ends
      the run at the read that sees it with nothing saved, so every checkpoint on disk
      is still the last good one.
    """

    def __init__(self, name: str, cfg, model, opt, rng: torch.Generator, steps: int,
                 log_every: int, show=("loss",), path=None):
        self.name, self.cfg, self.model, self.opt, self.rng = name, cfg, model, opt, rng
        self.path = path if getattr(cfg, "eval_every", 0) and path and path[1] else None
        self.steps, self.log_every, self.show = steps, log_every, show
        self.state_path = Path(cfg.out_dir) / f"{name}_state.pt"
        self.device = next(model.parameters()).device
        self.lazy = reads_lazily(self.device)

    def __enter__(self):
        self.start = 0
        if self.cfg.resume and self.state_path.exists():
            self.start = load_state(self.state_path, self.model, self.opt, self.rng)
        elif self.cfg.resume:
            print(f"note: --resume: no {self.state_path}, so {self.name} starts from step 0")
        self.main = is_main()
        self.metrics_file = MetricsLog(Path(self.cfg.out_dir) / f"{self.name}_metrics.jsonl",
                                       first_step=self.start) if self.main else None
        self.bar = tqdm(desc=self.name, total=self.steps, initial=self.start,
                        disable=None if self.main else True)
        self.ctrl_c = CtrlC().__enter__()
        self.held = {"models_in_memory": models_in_memory()}   # written with the first step
        self.path_file = Path(self.cfg.out_dir) / f"{self.name}_path.jsonl"
        if self.path and self.main and not self.start:
            self.path_file.unlink(missing_ok=True)
        self.pending, self.t_read = [], time.perf_counter()   # steps not yet read back
        self.t_start = self.t_read
        return self

    def __exit__(self, *exc):
        self.ctrl_c.__exit__()
        self.bar.close()
        if self.metrics_file:
            self.metrics_file.close()

    def log(self, step: int, metrics: dict) -> None:
        self.pending.append((step, metrics))
        self.bar.update(1)
        done = step + 1
        if self.path and self.main and done % self.cfg.eval_every == 0:
            t0 = time.perf_counter()
            policy, reference, *scorer = self.path
            point = path_point(policy, reference, eval_prompts(self.cfg.eval_prompts),
                               seed=self.cfg.seed, scorer=scorer[0] if scorer else None)
            with open(self.path_file, "a") as f:
                f.write(json.dumps({"step": done, **point}) + "\n")
            self.t_read += time.perf_counter() - t0          # not a training step's time
        save = done == self.steps or (self.cfg.save_every and done % self.cfg.save_every == 0)
        # One process may stop at any step; several read back (and so stop) at the same steps.
        if self.lazy and not (save or done % self.log_every == 0 or
                              (self.ctrl_c.requested and world_size() == 1)):
            return
        stop = read_back(self.pending, self.ctrl_c.requested, self.device)
        dt = (time.perf_counter() - self.t_read) / len(self.pending)
        for s, m in self.pending:
            if not math.isfinite(m["loss"]):
                end_run(f"error: {self.name}: the loss is {m['loss']} at step {s}; stopped "
                        f"without saving, so the checkpoints in {self.cfg.out_dir} are the last "
                        "good ones")
            m["dt"] = dt
            if "tokens" in m:
                m["tok/s"] = m.pop("tokens") / dt
            if self.main:
                self.report(s, m)
        self.pending = []
        if self.main and (stop or save):
            save_state(self.state_path, self.model, self.opt, self.rng, self.cfg, done, self.name)
        self.t_read = time.perf_counter()
        if stop:
            end_run(f"stopped: {self.name} state at step {done} saved in {self.state_path}; "
                    "run the same command with --resume to go on", 130)

    def report(self, step: int, metrics: dict) -> None:
        """To the metrics file, to the bar, and as a log line: the run's first step always
        (what the loss is made of at the start), and, when the bar is off (output is not a
        terminal), every log_every steps and at the end."""
        self.metrics_file.write(step, {**metrics, **self.held})
        self.bar.set_postfix_str(" ".join(f"{k} {metrics[k]:.3f}" for k in self.show))
        if self.held or self.bar.disable and (step % self.log_every == 0 or
                                              step == self.steps - 1):
            self.bar.write(" | ".join([f"{self.name} step {step}/{self.steps}" +
                                       self.time_left(step)] +
                                      [f"{k} {v:.4g}" for k, v in metrics.items()]))
        self.held = {}

    def time_left(self, step: int) -> str:
        """', about 3m05s left' at this run's pace so far ('' at its first step)."""
        done = step + 1 - self.start
        if done < 2:
            return ""
        left = (time.perf_counter() - self.t_start) / done * (self.steps - step - 1)
        return f", about {int(left // 60)}m{int(left % 60):02d}s left"


def models_in_memory() -> int:
    """Distinct sets of transformer weights alive in this process now: every GPT object
    (a ScoreModel's body is one) counted once per distinct embedding tensor, so a LoRA policy
    and its adapters-off reference count as one, a frozen copy as two. Measured, not declared:
    the resources table reads it from the first logged step."""
    gc.collect()                      # a model dropped in a reference cycle is not alive
    return len({obj.wte.weight.data_ptr() for obj in gc.get_objects() if type(obj) is GPT})


def reads_lazily(device) -> bool:
    """Whether metrics are read back only now and then: reading a CPU tensor is free,
    reading a GPU one makes the host wait for the GPU's queue to drain."""
    return device.type != "cpu"


def read_back(pending: list, stop: bool, device) -> bool:
    """Turn the tensors in the pending steps' metrics into numbers in place, with one copy
    from the device (each .item() would make the host wait for the GPU to catch up). With
    several processes, one all-reduce averages them and shares the Ctrl-C flag.
    Returns whether any process asked to stop."""
    cells = [(m, k) for _, m in pending for k, v in m.items() if torch.is_tensor(v)]
    flat = torch.stack([m[k].detach().float().to(device) for m, k in cells] +
                       [torch.tensor(float(stop), device=device)])
    *values, stop = all_reduce_mean(flat).tolist()
    for (m, k), v in zip(cells, values):
        m[k] = v
    return stop > 0


def last_logged(path, names, steps: int = 10) -> dict[str, float]:
    """The mean of each named metric over the last `steps` lines of a metrics file (the names
    some line lacks are left out)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()][-steps:]
    return {n: sum(r[n] for r in rows) / len(rows) for n in names if all(n in r for r in rows)}


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


class CtrlC(contextlib.AbstractContextManager):
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


def save_state(path, model, opt, rng, cfg, step: int, stage: str) -> None:
    """A resumable checkpoint: the model, the optimizer, the random generators and the step."""
    save_checkpoint(path, model, dataclasses.asdict(cfg), step, stage=stage,
                    optimizer=opt.state_dict(),
                    rng={"torch": torch.get_rng_state(), "batches": rng.get_state()})


def load_state(path, model, opt, rng) -> int:
    """Restore what save_state wrote into model, opt and rng; returns the step to go on from."""
    state = read_checkpoint(path, next(model.parameters()).device)
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.set_state(state["rng"]["batches"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
    except (KeyError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: cannot resume from this state ({first_line(e)})") from None
    print(f"resuming {state['stage']} from step {state['step']} ({path})")
    return state["step"]
