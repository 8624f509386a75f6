"""The command line of every script: a config dataclass becomes its flags.

Each script declares its settings once, as dataclass fields made with flag() (a
default, a help line, the --help group it belongs to, and bounds), and then
    python train_dpo.py --beta 0.3      is   main(DPOConfig(beta=0.3))
so a notebook calls main() with the same settings the command line takes.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from plumbing.distributed import leave_process_group


def flag(default, help: str, group: str = "training", **bounds):
    """A config field: its default, its --help line and group; above=x or at_least=x bound it."""
    return dataclasses.field(default=default, metadata={"help": help, "group": group, **bounds})


class ConfigError(ValueError):
    """A setting out of its bounds; run_cli prints it as one line."""


@dataclasses.dataclass
class RunConfig:
    """The flags every training script shares. Bounds given to flag() are checked on creation."""
    out_dir: str = flag("out", "folder for checkpoints, metrics, samples and eval", "run")
    overwrite: bool = flag(False, "replace this stage's checkpoint and eval in OUT_DIR even "
                                  "when a run with other settings wrote them", "run")
    device: str = flag("auto", "cuda, mps or cpu (auto picks in that order)", "run")
    seed: int = flag(0, "random seed", "run")
    smoke: bool = flag(False, "a seconds-long run with a tiny setup, for tests", "run")
    resume: bool = flag(False, "continue each stage from OUT_DIR/<stage>_state.pt", "run")
    compile: bool = flag(False, "torch.compile the model for training (pays off on a GPU "
                                "after a warm-up; on a CPU it needs a C++ compiler)", "run")
    save_every: int = flag(250, "save a resumable state every this many steps (0: only at "
                                "the end and on Ctrl-C)", "run", at_least=0)
    grad_clip: float = flag(1.0, "clip the gradient norm to this", above=0)
    eval_prompts: int = flag(256, "held-out prompts in the final evaluation", "evaluation",
                             at_least=1)

    def __post_init__(self):
        check_bounds(self)

    def inputs(self) -> dict[str, str]:
        """{flag: file}: the flags naming what this run reads, and the file in OUT_DIR each
        reads when left empty (the overwrite guard's advice names them)."""
        return {}

    def input_path(self, name: str) -> Path:
        """The file the input flag `name` names, or, left empty, its file in OUT_DIR."""
        return Path(getattr(self, name) or Path(self.out_dir) / self.inputs()[name])


@dataclasses.dataclass
class AlignConfig(RunConfig):
    """The flags every script that starts from the SFT model (train_dpo, train_grpo, train_rm,
    train_ppo) adds to RunConfig."""
    init_from: str = flag("", "the SFT checkpoint to start from and to use as the "
                              "reference (default: OUT_DIR/sft.pt)", "model")
    weight_decay: float = flag(0.0, "AdamW weight decay", at_least=0)
    allow_pretrained: bool = flag(False, "let --init_from name a pretraining checkpoint (to "
                                  "see what skipping SFT does; alignment expects an SFT model)",
                                  "model")
    eval_every: int = flag(0, "also measure the true reward and the KL to the reference every "
                              "this many steps, into OUT_DIR/<stage>_path.jsonl (0: only at the "
                              "end)", "evaluation", at_least=0)

    def inputs(self) -> dict[str, str]:
        return {"init_from": "sft.pt"}


@dataclasses.dataclass
class LoRAConfig(AlignConfig):
    """AlignConfig with LoRA's flags (DPO, GRPO, PPO): the policy trains low-rank adapters
    only, and its reference is the same model with the adapters off."""
    lora_rank: int = flag(0, "LoRA rank r (0: train every weight)", "model", at_least=0)
    lora_alpha: float = flag(16.0, "LoRA's alpha: the update is scaled by alpha / r", "model",
                             above=0)
    lora_targets: str = flag("attn.qkv,attn.proj,mlp.0,mlp.2", "comma-separated names of "
                             "the Linear layers given adapters (ends of module names)", "model")


def check_bounds(cfg) -> None:
    """ConfigError for a field outside the bounds its flag() gives (above=, at_least=)."""
    for f in dataclasses.fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata
        if value is None:
            continue
        if "above" in meta and not value > meta["above"]:
            raise ConfigError(f"--{f.name} must be > {meta['above']}, got {value}")
        if "at_least" in meta and not value >= meta["at_least"]:
            raise ConfigError(f"--{f.name} must be >= {meta['at_least']}, got {value}")


# The order of the groups in --help; a script's own group names come after these.
GROUP_ORDER = ["method", "model", "data", "training", "evaluation", "run"]


def examples(doc: str) -> str:
    """The docstring's example command lines (lines that start with python or torchrun, or
    pipe into python)."""
    lines = [line for line in doc.splitlines()
             if line.strip().startswith(("python", "torchrun")) or "| python" in line]
    return "examples:\n" + "\n".join(lines) if lines else ""


def build_parser(config_cls, doc: str) -> argparse.ArgumentParser:
    """One flag per field, in groups, each help line ending in its default (if it has one)."""
    parser = argparse.ArgumentParser(usage="%(prog)s [options]",
                                     description=" ".join(doc.strip().split("\n\n")[0].split()),
                                     epilog=examples(doc),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    fields = dataclasses.fields(config_cls)
    names = list(dict.fromkeys(GROUP_ORDER + [f.metadata["group"] for f in fields]))
    groups = {name: parser.add_argument_group(name) for name in names
              if any(f.metadata["group"] == name for f in fields)}
    for f in fields:
        help = f.metadata["help"]
        if f.default not in (None, "") and not isinstance(f.default, bool):
            help += f" (default: {f.default})"
        kwargs = {"default": f.default, "help": help}
        if f.type in (bool, "bool"):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str}.get(f.type, f.type)
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        groups[f.metadata["group"]].add_argument("--" + f.name, **kwargs)
    return parser


# other trainers' names (TRL, transformers, nanoGPT) for this project's flags
OTHER_NAMES = {"lr": "learning_rate", "learning-rate": "learning_rate", "output_dir": "out_dir",
               "epochs": "max_steps", "num_train_epochs": "max_steps", "steps": "max_steps",
               "num_steps": "max_steps", "max_iters": "max_steps", "bs": "batch_size",
               "per_device_train_batch_size": "batch_size", "model_name_or_path": "init_from",
               "model": "init_from", "kl_coeff": "kl_coef", "init_kl_coef": "kl_coef",
               "num_samples": "num_generations", "group_size": "num_generations",
               "max_completion_length": "max_new_tokens", "cliprange": "epsilon",
               "clip_range": "epsilon", "vf_coeff": "vf_coef", "warmup": "warmup_steps",
               "max_grad_norm": "grad_clip", "loss_type": "loss"}


def unknown_flag(arg: str, parser: argparse.ArgumentParser) -> str:
    """One line for a flag the script does not have: the name this project gives it where
    other trainers call it so, else the closest of its own flags, if one is close."""
    import difflib
    name = arg.split("=")[0].lstrip("-")
    flags = [o.lstrip("-") for a in parser._actions for o in a.option_strings
             if o.startswith("--")]
    guess = OTHER_NAMES.get(name) if OTHER_NAMES.get(name) in flags else None
    guess = guess or next(iter(difflib.get_close_matches(name, flags, n=1, cutoff=0.7)), None)
    return f"unknown flag {arg.split('=')[0]}" + (f": did you mean --{guess}?" if guess else
                                                  "") + " (--help lists them all)"


def parse_config(config_cls, doc: str = "", argv=None):
    """config_cls filled from the command line (argv, or sys.argv[1:]); a flag it does not
    have is a ConfigError naming the closest one."""
    parser = build_parser(config_cls, doc)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise ConfigError(unknown_flag(unknown[0], parser))
    return config_cls(**vars(args))


def run_cli(main, config_cls, doc: str) -> None:
    """Parse flags into config_cls and call main. Bad input (ValueError, which ConfigError,
    DataError and CheckpointError subclass) ends in one line and exit status 1, not a
    traceback. (A run the loop stops, at Ctrl-C or a non-finite loss, prints why and exits
    with its own status: plumbing.loop.TrainingStopped.)"""
    try:
        main(parse_config(config_cls, doc))
        leave_process_group()
    except ValueError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print("interrupted (nothing saved since the last checkpoint)", file=sys.stderr)
        sys.exit(130)
