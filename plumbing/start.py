"""What every training script's main does first: the --smoke settings, the output folder
checked, the random generators seeded, the device; and, for the alignment scripts, the
policy and its frozen reference loaded from the SFT checkpoint (with LoRA, one model).

Skip this file on a first read.
"""

import copy
import dataclasses
import random
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from model import AdaptersOff, add_lora, load_checkpoint, read_checkpoint
from plumbing.distributed import setup_device
from plumbing.evaluation import MEMORY_AT_START, peak_memory_mb

# Settings that change where or how a run goes, not what it computes: a checkpoint
# written with other values of these is the same run's.
HOW_NOT_WHAT = {"out_dir", "overwrite", "device", "resume", "compile", "save_every", "stage",
                "eval_every"}


def start_run(cfg, smoke: dict, outputs: list[str]):
    """What every main does first: (cfg with the --smoke settings if asked, the device),
    the random generators seeded, and OUT_DIR checked before any work (claim_outputs)."""
    if cfg.smoke:
        cfg = smoke_config(cfg, smoke)
    claim_outputs(cfg, outputs)
    set_seed(cfg.seed)
    device = setup_device(cfg.device)
    MEMORY_AT_START["mb"] = peak_memory_mb(device)     # the runtime's, before any model
    return cfg, device


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
    return " ".join(["python", Path(sys.argv[0]).name, *map(shlex.quote, keep),
                     f"--out_dir {Path(cfg.out_dir) / name}", *inputs])


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_policy_and_reference(cfg, device, start: str = "sft.pt"):
    """(policy, frozen reference, the reference's checkpoint): two copies of the SFT checkpoint
    (--init_from, default OUT_DIR/sft.pt), or with --lora_rank one model, adapters added
    (lora), its reference the adapters-off view. With start="pretrain.pt" (ORPO, which skips
    SFT) the policy starts from the pretrained model (--init_from, default OUT_DIR/
    pretrain.pt) and the reference, the sft.pt beside it, is only the evaluation's baseline."""
    if start != "sft.pt":
        start = Path(cfg.init_from or Path(cfg.out_dir) / start)
        policy = load_checkpoint(start, device)[0]
        sft_model, sft_path = load_sft(dataclasses.replace(
            cfg, init_from=str(start.with_name("sft.pt"))), device)
        print(f"the policy starts from {start}; the SFT model {sft_path} is only its baseline")
        return (lora(policy, cfg) if cfg.lora_rank else policy), \
            sft_model.eval().requires_grad_(False), sft_path
    policy, init = load_sft(cfg, device)
    if getattr(cfg, "lora_rank", 0):
        return lora(policy, cfg), AdaptersOff(policy).eval(), init
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    print(f"full fine-tuning: {policy.num_params():,} trainable parameters (100%), and a "
          "frozen copy as the reference")
    return policy, reference, init


def load_sft(cfg, device):
    """(the SFT model, its checkpoint): --init_from, default OUT_DIR/sft.pt; a pretraining
    checkpoint is refused unless --allow_pretrained, another stage's is warned about."""
    init = Path(cfg.init_from or Path(cfg.out_dir) / "sft.pt")
    model, ckpt = load_checkpoint(init, device)
    if ckpt.get("stage") == "pretrain" and not cfg.allow_pretrained:
        raise ValueError(f"{init} is a pretraining checkpoint; alignment starts from an SFT "
                         f"one (train_sft.py writes {Path(cfg.out_dir) / 'sft.pt'}; "
                         "--allow_pretrained starts from it anyway)")
    if ckpt.get("stage") != "sft":
        print(f"warning: {init} is a '{ckpt.get('stage')}' checkpoint, not SFT; alignment "
              "expects an SFT model as its start and its reference")
    return model, init


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
