"""The small pieces every training script calls: starting a run (seed, device, the
output folder), loading the policy and its reference, AdamW and its schedule, and
the before/after table.

Where the rest lives: flags in cli.py, the plumbing around the loop (resume, Ctrl-C,
NaN guard, metrics file) in training_run.py, several processes in distributed.py.
"""

import copy
import dataclasses
import json
import math
import random
import resource
import sys
from pathlib import Path

import numpy as np
import torch

from distributed import setup_device
from model import AdaptersOff, add_lora, load_checkpoint, read_checkpoint

# Settings that change where or how a run goes, not what it computes: a checkpoint
# written with other values of these is the same run's.
HOW_NOT_WHAT = {"out_dir", "overwrite", "device", "resume", "compile", "save_every", "stage"}


def start_run(cfg, smoke: dict, outputs: list[str]):
    """What every main does first: (cfg with the --smoke settings if asked, the device),
    the random generators seeded, and OUT_DIR checked before any work (claim_outputs)."""
    if cfg.smoke:
        cfg = smoke_config(cfg, smoke)
    claim_outputs(cfg, outputs)
    set_seed(cfg.seed)
    return cfg, setup_device(cfg.device)


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
            raise ValueError(f"{path} was written by a run with other settings ({diff}); "
                             "give this run its own --out_dir, or pass --overwrite to replace it")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_policy_and_reference(cfg, device):
    """(policy, frozen reference, checkpoint path): two copies of the SFT checkpoint, or with
    --lora_rank one model, adapters added (lora), its reference the adapters-off view."""
    init = Path(cfg.init_from or Path(cfg.out_dir) / "sft.pt")
    policy, ckpt = load_checkpoint(init, device)
    if ckpt.get("stage") == "pretrain" and not cfg.allow_pretrained:
        raise ValueError(f"{init} is a pretraining checkpoint; alignment starts from an SFT "
                         f"one (train_sft.py writes {Path(cfg.out_dir) / 'sft.pt'}; "
                         "--allow_pretrained starts from it anyway)")
    if ckpt.get("stage") != "sft":
        print(f"warning: {init} is a '{ckpt.get('stage')}' checkpoint, not SFT; alignment "
              "expects an SFT model as its start and its reference")
    if getattr(cfg, "lora_rank", 0):
        return lora(policy, cfg), AdaptersOff(policy).eval(), init
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    print(f"full fine-tuning: {policy.num_params():,} trainable parameters (100%), and a "
          "frozen copy as the reference")
    return policy, reference, init


def lora(model, cfg):
    """The model with LoRA adapters of cfg.lora_rank on cfg.lora_targets, the rest frozen."""
    add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets.split(","))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not trainable:
        raise ValueError(f"--lora_targets {cfg.lora_targets}: no Linear layer has such a name")
    total = sum(p.numel() for p in model.parameters())
    print(f"LoRA rank {cfg.lora_rank}, alpha {cfg.lora_alpha}: {trainable:,} trainable "
          f"parameters of {total:,} ({trainable / total:.1%}); the reference is the same "
          "model with its adapters off")
    return model


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


def peak_memory_mb(device) -> float:
    """Peak memory of this process: the GPU's allocations on CUDA, else the resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10     # KiB on Linux


def save_json(path, obj) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2) + "\n")
