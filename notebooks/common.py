"""What the notebooks share: where runs go, the small mode the tests use, the SFT
checkpoint they all start from, a DPO, GRPO or PPO run with a notebook's own loss, and
reading metrics files. (The project's modules import from here because
requirements.txt installs the repository in editable mode.)

NOTEBOOK_SMALL=1 (set by tests/test_notebooks.py) swaps every run for its --smoke
version and NOTEBOOK_OUT moves all output to a scratch folder, so a test executes
each notebook top to bottom in seconds.
"""

import contextlib
import json
import os
from pathlib import Path

import train_dpo
import train_grpo
import train_ppo
import train_rm
from train_sft import SFTConfig, main as train_sft

ROOT = Path(__file__).resolve().parents[1]

SMALL = os.environ.get("NOTEBOOK_SMALL") == "1"
OUT = Path(os.environ.get("NOTEBOOK_OUT", ROOT / "out"))


def sft_checkpoint() -> Path:
    """OUT/sft.pt, trained first when it is missing (about 6 minutes on a 2-core CPU)."""
    path = OUT / "sft.pt"
    if not path.exists():
        train_sft(SFTConfig(out_dir=str(OUT), smoke=SMALL))
    return path


def read_metrics(path) -> dict[str, list]:
    """A metrics JSONL file as columns: {"step": [...], "loss": [...], ...}."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return {k: [r.get(k) for r in rows]            # None where a row lacks the key (the
            for k in dict.fromkeys(k for r in rows for k in r)}   # first holds models_in_memory)


def run_train_dpo(folder: str, name: str, loss_fn, **flags):
    """One train_dpo.py run from the SFT checkpoint, trained with the notebook's own loss
    function (flags as DPOConfig fields); its log goes to OUT/folder/name/log.txt.
    Prints a summary line; returns (eval metrics, the run's folder)."""
    metrics, out = run_script(train_dpo.main, train_dpo.DPOConfig, folder, name, flags,
                              loss_fn=loss_fn)
    print(f"{name:>14}: reward {metrics['reward_mean']:.3f}  win rate "
          f"{metrics['win_rate_vs_sft']:.3f}  KL {metrics['kl_to_ref']:7.2f}  length "
          f"{metrics['mean_length']:5.1f}")
    return metrics, out


def run_train_grpo(folder: str, name: str, loss_fn, **flags):
    """The same for train_grpo.py: returns (eval metrics, the run's metrics columns)."""
    metrics, out = run_script(train_grpo.main, train_grpo.GRPOConfig, folder, name, flags,
                              loss_fn=loss_fn)
    print(f"{name:>12}: accuracy {metrics['accuracy']:.3f}  reward {metrics['reward_mean']:.3f}"
          f"  KL {metrics['kl_to_ref']:.3f}")
    return metrics, read_metrics(out / "grpo_metrics.jsonl")


def reward_model(folder: str, report: bool = True) -> Path:
    """OUT/folder/rm.pt, trained by train_rm.py from the SFT checkpoint when it is missing
    (about 40 s on a 2-core CPU); reports its held-out accuracy and rank correlation."""
    out = OUT / folder
    path = out / "rm.pt"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        cfg = train_rm.RMConfig(out_dir=str(out), init_from=str(sft_checkpoint()), smoke=SMALL)
        with open(out / "rm_log.txt", "w") as log, contextlib.redirect_stdout(log):
            train_rm.main(cfg)
    ev = json.loads((out / "rm_eval.json").read_text())
    if report:
        print(f"reward model: held-out pair accuracy {ev['pair_accuracy']:.3f}, rank correlation "
              f"with the true reward {ev['rank_correlation']:.3f}")
    return path


def run_train_ppo(folder: str, name: str, loss_fn, gae_fn, **flags):
    """One train_ppo.py run with the notebook's own PPO loss and GAE, against
    OUT/folder/rm.pt: returns (eval metrics, the run's metrics columns)."""
    flags = {"reward_model": str(reward_model(folder, report=False)), **flags}
    metrics, out = run_script(train_ppo.main, train_ppo.PPOConfig, folder, name, flags,
                              loss_fn=loss_fn, gae_fn=gae_fn)
    print(f"{name:>12}: true reward {metrics['reward_mean']:.3f}  RM score "
          f"{metrics['rm_score']:.3f}  win rate {metrics['win_rate_vs_sft']:.3f}  "
          f"KL {metrics['kl_to_ref']:6.2f}")
    return metrics, read_metrics(out / "ppo_metrics.jsonl")


def run_script(main, config_cls, folder: str, name: str, flags: dict, **functions):
    """main(config_cls(**flags), **functions) in OUT/folder/name, from the SFT checkpoint
    unless flags give another init_from; functions are the notebook's own (loss_fn=...).
    A rerun after an edit replaces that folder's last run (overwrite=True): a notebook is
    for trying things."""
    out = OUT / folder / name
    out.mkdir(parents=True, exist_ok=True)
    flags = {"init_from": str(sft_checkpoint()), **flags}
    cfg = config_cls(out_dir=str(out), smoke=SMALL, overwrite=True, **flags)
    with open(out / "log.txt", "w") as log, contextlib.redirect_stdout(log):
        metrics = main(cfg, **functions)
    return metrics, out
