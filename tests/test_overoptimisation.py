"""experiments/overoptimisation.py at --smoke: three reward models per seed, best-of-N by each
(exact), PPO on each with a weak leash and its path, the fits, the claims judged by the
paired rule, the page and the plot again from the JSON alone; and its one-run reader."""
import json

from experiments import overoptimisation as oo


def test_smoke_run_measures_every_reward_model_and_redraws_from_its_json(tmp_path, capsys):
    results = oo.main(["--smoke", "--out", str(tmp_path)])
    assert not results["failed"]
    seed = results["seeds"]["0"]
    assert set(seed["reward_models"]) == set(oo.RM_PROMPTS)
    for rm in seed["reward_models"].values():
        assert 0 <= rm["accuracy"] <= 1 and rm["pairs"] > 0
        assert [b["n"] for b in rm["best_of"]] == [1, 2, 4, 8]          # N up to M (8 at smoke)
        assert rm["best_of"][0]["kl"] == 0                               # N = 1 is pi_ref
        assert set(rm["ppo"]) == set(oo.KL_COEFS)
        assert all({"reward", "kl", "rm_score", "unfinished"} <= set(p) for p in rm["ppo"]["0"])
    assert set(results["fits"]["4000"]) == {"bon", "rl"}
    verdicts = [c["verdict"] for c in results["claims"]]
    assert len(verdicts) == 3 and all(v.split(" (")[0] in (
        "holds", "not run", "not settled", "does not hold: no difference that matters",
        "does not hold: reversed") for v in verdicts), verdicts
    assert (tmp_path / "overoptimisation.png").stat().st_size > 10_000
    text = (tmp_path / "overoptimisation.md").read_text()
    oo.main(["--report", str(tmp_path / "overoptimisation.json"), "--out", str(tmp_path / "again")])
    assert (tmp_path / "again" / "overoptimisation.md").read_text() == text
    # the one-run reader, on a PPO run's metrics file of this sweep
    metrics = next(tmp_path.glob("seed0/train_ppo*/ppo_metrics.jsonl"))
    capsys.readouterr()
    oo.main(["--metrics", str(metrics), "--window", "2"])
    table = capsys.readouterr().out
    assert "| peak: true reward |" in table and "| end: RM score |" in table
    assert json.loads((tmp_path / "overoptimisation.json").read_text())["smoke"] is True
