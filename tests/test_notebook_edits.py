"""What each notebook's "Things to try" says an edit of its loss cell prints is what the
edited cell prints: each edit made as the text says, the cell run (no training), its lines
read. (The predictions about training curves need full runs, not a test's seconds.)"""
import contextlib
import io
import json
import math
from pathlib import Path

import matplotlib
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")
FOLDER = Path(__file__).resolve().parents[1] / "notebooks"


def cell(notebook: str, starts: str) -> str:
    """The source of the notebook's one code cell that begins with `starts`."""
    cells = json.loads((FOLDER / f"{notebook}.ipynb").read_text())["cells"]
    found = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith(starts)]
    assert len(found) == 1, (notebook, starts)
    return "".join(found[0]["source"])


def things_to_try(notebook: str) -> str:
    cells = json.loads((FOLDER / f"{notebook}.ipynb").read_text())["cells"]
    return next("".join(c["source"]) for c in cells if "## Things to try" in "".join(c["source"]))


def run(source: str, edits: list[tuple[str, str]]) -> tuple[str, dict]:
    """The cell with each (old, new) edit made (each old must be in it), run: (what it
    printed, its namespace)."""
    for old, new in edits:
        assert old in source, old
        source = source.replace(old, new)
    import matplotlib.pyplot as plt
    namespace, printed = {"torch": torch, "F": F, "math": math, "plt": plt}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(source, namespace)
    return printed.getvalue(), namespace


def difference(printed: str, name: str) -> float:
    """The number a check line prints after 'name...difference from ...:'."""
    line = next(x for x in printed.splitlines() if name in x and "difference" in x)
    return float(line.rsplit(":", 1)[1])


def test_01_a_hinge_moves_the_loss_at_the_reference_from_ln2_to_1():
    edits = [("F.logsigmoid(beta * h)", "-torch.relu(1 - beta * h)"),
             ("F.logsigmoid(-beta * h)", "-torch.relu(1 + beta * h)")]
    assert all(f"`{old}` with `{new}`" in things_to_try("01_dpo") for old, new in edits)
    printed, _ = run(cell("01_dpo", "import math\n\ndef dpo_loss"), edits)
    assert difference(printed, "label_smoothing 0.0") > 0
    assert "at policy == reference the loss is 1.0000" in printed


def test_02_an_absolute_ipo_loss_keeps_its_minimum_at_the_target():
    assert "replace `** 2` with `.abs()`" in things_to_try("02_ipo_simpo")
    printed, ns = run(cell("02_ipo_simpo", "def dpo_loss"), [("** 2", ".abs()")])
    assert difference(printed, "ipo:") > 0
    tau = 0.5                                     # a margin at 1/(2 tau): the loss is 0 there
    at_target = ns["ipo_loss"](torch.tensor([1 / (2 * tau)]), torch.zeros(1), torch.zeros(1),
                               torch.zeros(1), beta=tau)[0]
    assert at_target.item() == 0.0


@pytest.mark.parametrize("edit", [("        per_token = per_token + beta * kl\n", ""),
                                  ("kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1",
                                   "kl = logps - ref_logps")])
def test_03_dropping_or_swapping_the_kl_term_shows_in_the_check(edit):
    printed, _ = run(cell("03_grpo", "def grpo_loss"), [edit])
    assert difference(printed, "losses.grpo_loss") > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")    # matplotlib's, on tensors
def test_03_the_naive_kl_in_the_bandit_runs_as_if_beta_were_0():
    text = things_to_try("03_grpo")
    assert "put `logp - log_ref` there and the policy runs from\n  pi_ref as if beta were 0" in text
    _, ns = run(cell("03_grpo", "import torch.nn.functional as F"),
                [("k3 = torch.exp(log_ref - logp) - (log_ref - logp) - 1", "k3 = logp - log_ref"),
                 ("plt.tight_layout(); plt.show()", "plt.close(fig)")])
    naive = ns["found"]["k3 in the loss"]
    ns["beta"] = 0.0                                             # ascend reads the global
    assert torch.allclose(naive, ns["ascend"]("loss"), atol=1e-9)


def test_04_kto_without_its_reference_point_shows_in_the_check():
    assert "Replace `kl` by `0.0` in `kto_loss`" in things_to_try("04_kto_orpo")
    printed, _ = run(cell("04_kto_orpo", "def kto_loss"),
                     [("(r - kl)", "(r - 0.0)"), ("(kl - r)", "(0.0 - r)")])
    assert difference(printed, "kto:") > 0


def test_05_no_value_clipping_shows_in_the_check_and_in_its_clip_fraction():
    assert "`vf_clipped = ...` line, replace `v_clipped` by\n  `values`" in things_to_try(
        "05_rlhf_ppo")
    source = cell("05_rlhf_ppo", "def gae") + "\n" + cell("05_rlhf_ppo", "def ppo_loss")  # g, mask
    printed, ns = run(source, [("(v_clipped - returns) ** 2", "(values - returns) ** 2")])
    assert difference(printed, "ppo_loss") > 0
    args = [torch.randn(4, 6) for _ in range(6)]
    assert ns["ppo_loss"](*args, torch.ones(4, 6))[1]["val/clipfrac_avg"].item() == 0.0


def test_04_loss_aversion_prints_its_ratio_and_warns(capsys):
    from data.pairs import kto_weights
    text = things_to_try("04_kto_orpo")
    assert "`undesirable_weight=2.0` (and `desirable_weight=1.0`)" in text
    assert "prints the new $w_D n_D / (w_U n_U)$ and warns" in text
    kto_weights([True] * 30 + [False] * 70, 1.0, 2.0)        # the edit, on any mix of labels
    printed = capsys.readouterr().out
    assert "w_D n_D / (w_U n_U) = 0.21" in printed and "warning: w_D n_D / (w_U n_U) is " \
        "outside [1, 4/3]" in printed
