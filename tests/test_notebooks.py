"""Every notebook runs top to bottom in its small mode, without a cell error, through the
command docs/notebooks.md gives (notebooks/execute.py)."""
import sys
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
sys.path.insert(0, str(FOLDER))
from execute import execute  # noqa: E402  (notebooks/ is a folder of notebooks, not a package)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One output folder for all notebooks, so the small SFT model is trained once."""
    return tmp_path_factory.mktemp("notebooks")


def test_there_are_five_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_dpo.ipynb", "02_ipo_simpo.ipynb", "03_grpo.ipynb",
                                           "04_kto_orpo.ipynb", "05_rlhf_ppo.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, scratch, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_SMALL", "1")       # smoke-sized runs (notebooks/common.py)
    monkeypatch.setenv("NOTEBOOK_OUT", str(scratch))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = execute(path, timeout=600)                                   # raises on a cell's error
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    # each notebook's own loss matches losses.py until edited, and its checks print so
    checks = {"01_dpo": ["label_smoothing 0.0: max difference from losses.dpo_loss: 0.0",
                         "difference from experiments.ceiling.optimum: 0.0",
                         "label_smoothing 0.1: max difference from losses.dpo_loss: 0.0",
                         "the loss is 0.6931", "lowers the loss: True"],
              "02_ipo_simpo": [f"{n}: max difference from losses.{n}_loss: 0.0"
                               for n in ("dpo", "ipo", "simpo")],
              "03_grpo": ["difference from losses.grpo_loss: 0.0", "raises the log-probs: True"],
              "04_kto_orpo": ["kto: max difference from losses.kto_loss: 0.0",
                              "undesirable down: True", "orpo: max difference from "
                              "losses.orpo_loss: 0.0", "finite at c = -1e-9: True",
                              "rejected down: True"],
              "05_rlhf_ppo": ["advantages [0.466, 0.385, 0.3]", "gae: max difference from "
                              "losses.gae: 0.0", "ppo_loss: max difference from "
                              "losses.ppo_loss: 0.0", "raises the log-prob: True"]}
    for line in checks[path.stem]:
        assert line in outputs, line
