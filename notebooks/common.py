"""What the three notebooks share: the repo on the import path, where runs go, the small
mode the tests use, the SFT checkpoint they all start from, a DPO run with a notebook's
own loss, and reading metrics files.

NOTEBOOK_SMALL=1 (set by tests/test_notebooks.py) swaps every run for its --smoke
version and NOTEBOOK_OUT moves all output to a scratch folder, so a test executes
each notebook top to bottom in seconds.
"""

import contextlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train_dpo  # noqa: E402
from train_sft import SFTConfig, main as train_sft  # noqa: E402

SMALL = os.environ.get("NOTEBOOK_SMALL") == "1"
OUT = Path(os.environ.get("NOTEBOOK_OUT", ROOT / "out"))


def sft_checkpoint() -> Path:
    """OUT/sft.pt, trained first when it is missing (about 4 minutes on a 2-core CPU)."""
    path = OUT / "sft.pt"
    if not path.exists():
        train_sft(SFTConfig(out_dir=str(OUT), smoke=SMALL))
    return path


def read_metrics(path) -> dict[str, list]:
    """A metrics JSONL file as columns: {"step": [...], "loss": [...], ...}."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return {k: [r[k] for r in rows] for k in rows[0]}


def run_train_dpo(folder: str, name: str, loss_fn, **flags):
    """One train_dpo.py run from the SFT checkpoint, trained with the notebook's own loss
    function (flags as DPOConfig fields); its log goes to OUT/folder/name/log.txt.
    Prints a summary line; returns (eval metrics, the run's folder)."""
    out = OUT / folder / name
    out.mkdir(parents=True, exist_ok=True)
    cfg = train_dpo.DPOConfig(init_from=str(sft_checkpoint()), out_dir=str(out), smoke=SMALL,
                              **flags)
    with open(out / "log.txt", "w") as log, contextlib.redirect_stdout(log):
        metrics = train_dpo.main(cfg, loss_fn=loss_fn)
    print(f"{name:>14}: reward {metrics['reward_mean']:.3f}  win rate "
          f"{metrics['win_rate_vs_sft']:.3f}  KL {metrics['kl_to_ref']:7.2f}  length "
          f"{metrics['mean_length']:5.1f}")
    return metrics, out
