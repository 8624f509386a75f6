"""sweep.py: seeds and grids parsed, runs in their own folders, shared steps reused, and
the table's mean and std equal to the ones computed by hand from the runs' eval files."""
import json
import math

import pytest

from experiments import sweep


def test_seeds_and_grid_parse():
    assert sweep.parse_seeds(["0-2", "5", "1"]) == [0, 1, 2, 5]
    assert sweep.parse_grid(["beta=0.1,0.3", "loss=dpo,ipo"]) == [
        {"beta": "0.1", "loss": "dpo"}, {"beta": "0.1", "loss": "ipo"},
        {"beta": "0.3", "loss": "dpo"}, {"beta": "0.3", "loss": "ipo"}]
    assert sweep.parse_grid([]) == [{}]
    with pytest.raises(ValueError, match="0-x"):
        sweep.parse_seeds(["0-x"])
    with pytest.raises(ValueError, match="FLAG=V1"):
        sweep.parse_grid(["beta"])


def test_summary_by_hand():
    s = sweep.summarize([0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7) and s["n"] == 3
    assert s["std"] == pytest.approx(0.2)          # sqrt((0.04 + 0 + 0.04) / (3 - 1))
    assert (s["min"], s["max"]) == (0.5, 0.9)
    assert sweep.summarize([0.4])["std"] == 0.0
    assert sweep.summarize([0.4, math.nan])["n"] == 1              # NaN: not measured


def test_bad_steps_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no script"):
        sweep.main(["--out", str(tmp_path), "train_nothing.py"])
    with pytest.raises(SystemExit, match="sets --seed"):
        sweep.main(["--out", str(tmp_path), "train_sft.py --seed 3"])
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        sweep.main(["--out", str(tmp_path / "taken"), "train_sft.py"])


def test_two_seeds_then_a_grid_that_reuses_them(tmp_path):
    out = tmp_path / "sw"
    steps = ["train_sft.py --smoke", "train_dpo.py --smoke --max_steps 2"]
    results = sweep.main(["--seeds", "0-1", "--out", str(out), "--jobs", "2", *steps])
    dpo_folder = "train_dpo_smoke_max_steps_2"
    evals = [json.loads((out / f"seed{s}" / dpo_folder / "dpo_eval.json").read_text())
             for s in (0, 1)]
    row = results["all"]["summary"]["dpo/reward_mean"]
    a, b = (e["reward_mean"] for e in evals)
    assert row["n"] == 2
    assert row["mean"] == pytest.approx((a + b) / 2)
    assert row["std"] == pytest.approx(abs(a - b) / math.sqrt(2))   # sample std of two values
    assert results["all"]["summary"]["sft/accuracy"]["n"] == 2
    assert "dpo/reward_mean" in (out / f"{dpo_folder}.md").read_text()
    assert json.loads((out / f"{dpo_folder}.json").read_text())["results"]["all"]["runs"]["seed 1"] == \
        results["all"]["runs"]["seed 1"]

    # The same SFT step, then IPO: SFT is reused, IPO gets its own folder holding a copy
    # of the seed's SFT checkpoint, and the DPO run's folder is left alone.
    sft_mtime = (out / "seed1" / "sft.pt").stat().st_mtime
    results = sweep.main(["--seeds", "1", "--out", str(out), *steps, "--grid", "loss=ipo"])
    assert (out / "seed1" / "sft.pt").stat().st_mtime == sft_mtime
    folder = out / "seed1" / (dpo_folder + "_loss_ipo")
    assert (folder / "ipo_eval.json").is_file() and (folder / "sft.pt").is_file()
    assert (out / "seed1" / dpo_folder / "dpo_eval.json").is_file()
    summary = results["lossipo"]["summary"]
    sft_eval = json.loads((out / "seed1" / "sft_eval.json").read_text())
    assert summary["ipo/kl_to_ref"]["n"] == 1
    assert summary["sft/accuracy"]["mean"] == sft_eval["accuracy"]
