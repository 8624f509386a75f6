"""What each notebook's "Things to try" says an edit prints is what the edited notebook
prints: each edit made as the text says, the loss cell run (no training) and its lines read;
a prediction about training curves checked on two --smoke runs from the smoke SFT model,
with and without the edit, on the same batches in the same order (a higher learning rate
and more steps than --smoke's, so that a seconds-long run gets there)."""
import contextlib
import io
import json
import math
from pathlib import Path
from statistics import fmean

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
    text = next("".join(c["source"]) for c in cells if "## Things to try" in "".join(c["source"]))
    return " ".join(text.split())                  # line breaks and indents as single spaces


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


def test_02_an_absolute_ipo_loss_keeps_its_minimum_at_the_target_and_a_steady_gradient():
    text = things_to_try("02_ipo_simpo")
    assert "replace `** 2` with `.abs()`" in text and "its size is 1 at every margin" in text
    printed, ns = run(cell("02_ipo_simpo", "def dpo_loss"), [("** 2", ".abs()")])
    assert difference(printed, "ipo:") > 0
    tau = 0.5                                     # a margin at 1/(2 tau): the loss is 0 there
    margin = torch.tensor([1 / (2 * tau), 0.0, 0.9, 1.1, 3.0], requires_grad=True)
    zeros = torch.zeros(5)
    losses = ns["ipo_loss"](margin, zeros, zeros, zeros, beta=tau)[0]
    assert losses[0].item() == 0.0
    losses.sum().backward()                       # d|h - 1|/dh = -1 below the target, +1 above
    assert margin.grad[1:].tolist() == [-1.0, -1.0, 1.0, 1.0]


@pytest.mark.parametrize("edit", [("        per_token = per_token + beta * kl\n", ""),
                                  ("kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1",
                                   "kl = logps - ref_logps")])
def test_03_dropping_or_swapping_the_kl_term_shows_in_the_check(edit):
    printed, _ = run(cell("03_grpo", "def grpo_loss"), [edit])
    assert difference(printed, "losses.grpo_loss") > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")    # matplotlib's, on tensors
def test_03_the_naive_kl_in_the_bandit_runs_as_if_beta_were_0():
    text = things_to_try("03_grpo")
    assert "put `logp - log_ref` there and the policy runs from pi_ref as if beta were 0" in text
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
    assert "`vf_clipped = ...` line, replace `v_clipped` by `values`" in things_to_try(
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


# Training-curve predictions, on --smoke runs (a few seconds each).

def test_01_conservative_dpo_margins_stop_below_log_9(dpo_smoke):
    text = things_to_try("01_dpo")
    assert "label_smoothing=0.1" in text and r"\frac{1-\varepsilon}{\varepsilon} \approx 2.2" in text
    _, ns = run(cell("01_dpo", "import math\n\ndef dpo_loss"), [])
    flags = ["--beta", "1.0", "--rpo_alpha", "0", "--max_steps", "60", "--batch_size", "16",
             "--learning_rate", "1e-3"]
    margins = {eps: [row["rewards/margins"] for row in dpo_smoke(
        f"eps_{eps}", *flags, "--label_smoothing", str(eps), loss_fn=ns["dpo_loss"])[1]]
        for eps in (0.0, 0.1)}
    smoothed, plain = fmean(margins[0.1][-20:]), fmean(margins[0.0][-20:])   # the last 20 steps
    assert smoothed < math.log(9) < 2 * math.log(9) < plain, (smoothed, plain)


def test_01_the_nll_term_holds_the_chosen_answers_log_probs_higher(dpo_smoke):
    assert "the larger weight's curve is the higher" in things_to_try("01_dpo")
    _, ns = run(cell("01_dpo", "import math\n\ndef dpo_loss"), [])
    chosen = {a: [row["logps/chosen"] for row in dpo_smoke(
        f"rpo_{a}", "--rpo_alpha", str(a), "--max_steps", "40", "--learning_rate", "1e-3",
        loss_fn=ns["dpo_loss"])[1]] for a in (0.0, 3.0)}
    assert chosen[3.0][0] == chosen[0.0][0]                 # the same first batch, one model
    assert all(a > b for a, b in zip(chosen[3.0][1:], chosen[0.0][1:]))


def test_02_ipo_at_tau_0_25_logs_a_margin_near_0_5_and_goes_further(dpo_smoke):
    assert 'beta=0.25)`. Its logged margin is $\\tau$-scaled' in things_to_try("02_ipo_simpo")
    _, ns = run(cell("02_ipo_simpo", "def dpo_loss"), [])
    runs = {tau: dpo_smoke(f"tau_{tau}", "--loss", "ipo", "--beta", str(tau), "--rpo_alpha", "0",
                           "--max_steps", "80", "--learning_rate", "3e-3", loss_fn=ns["ipo_loss"])
            for tau in (0.5, 0.25)}
    logged = {tau: fmean([row["rewards/margins"] for row in log[-20:]])    # tau x the margin
              for tau, (_, log, _) in runs.items()}
    assert all(abs(m - 0.5) < 0.15 for m in logged.values()), logged
    assert logged[0.25] / 0.25 > 1.3 * logged[0.5] / 0.5                # the log-ratio margin
    assert runs[0.25][0]["kl_to_ref"] > runs[0.5][0]["kl_to_ref"]


def test_05_without_policy_clipping_more_passes_move_the_ratio_further(rm_dir, tmp_path):
    import train_ppo
    from plumbing.flags import parse_config
    assert "replace `ratio.clamp(...)` by `ratio`, and run with `num_ppo_epochs=8`" in \
        things_to_try("05_rlhf_ppo")
    source = cell("05_rlhf_ppo", "def gae") + "\n" + cell("05_rlhf_ppo", "def ppo_loss")
    approxkl = {}
    for clipped in (True, False):
        _, ns = run(source, [] if clipped else [("ratio.clamp(1 - epsilon, 1 + epsilon)", "ratio")])
        out = tmp_path / str(clipped)
        cfg = parse_config(train_ppo.PPOConfig, "", [
            "--smoke", "--out_dir", str(out), "--init_from", str(rm_dir / "sft.pt"),
            "--reward_model", str(rm_dir / "rm.pt"), "--num_ppo_epochs", "8", "--max_steps", "2",
            "--learning_rate", "1e-3", "--warmup_steps", "0"])
        train_ppo.main(cfg, loss_fn=ns["ppo_loss"], gae_fn=ns["gae"])
        first = json.loads((out / "ppo_metrics.jsonl").read_text().splitlines()[0])
        approxkl[clipped] = first["policy/approxkl_avg"]    # the first batch: the same rollouts
    assert approxkl[False] > approxkl[True], approxkl
