"""Plumbing the three training scripts share: flags from a config dataclass, the
optimizer and its schedule, the metrics file, and the before/after table."""

import argparse
import dataclasses
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import torch


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
    """Parse flags into config_cls and call main; bad input ends in one line, not a traceback.

    ValueError covers data.batching.DataError, which subclasses it."""
    try:
        main(parse_config(config_cls, doc.split("\n")[0]))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


def flag(default, help: str, **extra):
    """A config field with its --help text."""
    return dataclasses.field(default=default, metadata={"help": help, **extra})


@dataclasses.dataclass
class AlignConfig:
    """The flags every alignment script (DPO, GRPO) shares; each adds its own."""
    init_from: str = flag("", "SFT checkpoint (default: OUT_DIR/sft.pt)")
    out_dir: str = flag("out", "folder for checkpoints, metrics, samples and eval")
    weight_decay: float = flag(0.0, "AdamW weight decay")
    grad_clip: float = flag(1.0, "clip the gradient norm to this")
    eval_prompts: int = flag(256, "held-out prompts in the final evaluation")
    device: str = flag("auto", "cuda, mps or cpu (auto picks in that order)")
    seed: int = flag(0, "random seed")
    smoke: bool = flag(False, "a seconds-long run, for tests")


def smoke_config(cfg, smoke: dict):
    """cfg with the --smoke settings, except the flags given a non-default value."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in smoke.items()
                                      if getattr(cfg, k) == defaults[k]})


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
    """One JSON object a line: {"step": ..., name: value, ...}, for the notebooks to plot."""

    def __init__(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w")

    def write(self, step: int, metrics: dict) -> None:
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.file.flush()

    def close(self):
        self.file.close()


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
    lines = [title] if title else []
    lines.append(" " * width + "".join(f"{c:>12}" for c in columns))
    for n in names:
        cells = [columns[c].get(n) for c in columns]
        lines.append(f"{n:<{width}}" + "".join(
            f"{v:>12.3f}" if isinstance(v, float) else f"{'' if v is None else v:>12}"
            for v in cells))
    text = "\n".join(lines)
    print(text)
    sys.stdout.flush()
    return text


def save_json(path, obj) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2) + "\n")
