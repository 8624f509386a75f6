"""What the three notebooks share: the repo on the import path, where runs go, the small
mode the tests use, the SFT checkpoint they all start from, and reading metrics files.

NOTEBOOK_SMALL=1 (set by tests/test_notebooks.py) swaps every run for its --smoke
version and NOTEBOOK_OUT moves all output to a scratch folder, so a test executes
each notebook top to bottom in seconds.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train_sft import SFTConfig, main as train_sft  # noqa: E402

SMALL = os.environ.get("NOTEBOOK_SMALL") == "1"
OUT = Path(os.environ.get("NOTEBOOK_OUT", ROOT / "out"))


def sft_checkpoint() -> Path:
    """OUT/sft.pt, trained first when it is missing (about 3.5 minutes on a 2-core CPU)."""
    path = OUT / "sft.pt"
    if not path.exists():
        train_sft(SFTConfig(out_dir=str(OUT), smoke=SMALL))
    return path


def read_metrics(path) -> dict[str, list]:
    """A metrics JSONL file as columns: {"step": [...], "loss": [...], ...}."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return {k: [r[k] for r in rows] for k in rows[0]}
