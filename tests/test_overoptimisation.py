"""experiments/overoptimisation.py at --smoke: three reward models per seed, best-of-N by each
(exact), PPO on each with a weak leash and its path, the fits, the claims judged by the
paired rule, the page and the plot again from the JSON alone; and its one-run reader."""
import json

import numpy as np
import pytest

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


def synthetic(peaks_bon, peaks_ppo, accuracies=(0.60, 0.70, 0.80), exploited=True):
    """One seed's results with three reward models: best-of-N peaks, PPO (kl_coef 0) paths
    that rise to a peak and (exploited) fall while the score climbs."""
    def path(top):
        gold = [0.6, top - 0.05, top, top - 0.05] + ([0.3, 0.2, 0.1] if exploited else [top] * 3)
        return [{"step": 25 * (i + 1), "kl": 0.5 * (i + 1), "reward": g, "rm_score": 0.2 * i,
                 "unfinished": 0.0} for i, g in enumerate(gold[1:])]
    rms = {n: {"accuracy": a, "pairs": 2000, "sft_proxy": 0.0, "proxy_std": 0.3,
               "best_of": [{"n": 1, "gold": 0.6, "kl": 0.0, "proxy": 0.0},
                           {"n": 8, "gold": b, "kl": 1.2, "proxy": 1.0}],
               "peak_draws": [b + 0.001 * (i % 3) for i in range(20)],
               "start": {"reward": 0.6, "kl": 0.0, "rm_score": 0.0, "unfinished": 0.0},
               "ppo": {"0": path(p)}}
           for n, a, b, p in zip(oo.RM_PROMPTS, accuracies, peaks_bon, peaks_ppo)}
    seed = {"sft_gold": 0.6, "answer_std": 0.3, "reward_models": rms,
            "ceiling": [{"kl": 0.0, "reward": 0.6}, {"kl": 3.0, "reward": 1.0}]}
    return {"prompts": 256, "seeds": {"0": seed}}


def test_the_claims_hold_fail_and_stay_unsettled_by_their_rules():
    caps_bon, caps_ppo, exploit = (c["verdict"] for c in oo.judge(synthetic(
        (0.80, 0.90, 0.97), (0.75, 0.85, 0.95))))
    assert caps_bon == caps_ppo == exploit == "holds (1 of 1 seeds)"
    flat = synthetic((0.90, 0.905, 0.91), (0.85, 0.85, 0.85), exploited=False)
    # PPO's delta from path noise: 2 sqrt(2) 0.3 / sqrt(3 x 256) = 0.031, past the declared
    # 0.02: a flat PPO peak cannot be told from a change that matters; nor a flat gold past
    # its peak, whose delta is wider still: the peak is the highest of the path's 7 points
    # (z at 0.05 / 7, 2.69, for 2: 0.041)
    assert [c["verdict"] for c in oo.judge(flat)] == [
        "does not hold: no difference that matters (1 of 1 seeds)",
        "not settled (seed 0: within the noise (delta 0.031))",
        "not settled (seed 0: within the noise (delta 0.041))"]
    flat["seeds"]["0"]["answer_std"] = 0.1                     # deltas 0.010, 0.014: DELTA's
    assert [c["verdict"] for c in oo.judge(flat)] == ["does not hold: no difference that matters "
                                                      "(1 of 1 seeds)"] * 3
    # a peak that falls then rises: the steps differ; accuracies 0.005 apart on 2000 pairs are
    # within their noise, whatever the peaks do
    assert oo.judge(synthetic((0.80, 0.95, 0.85), (0.75, 0.85, 0.95)))[0]["verdict"] == \
        "not settled (seed 0: steps differ: beyond, reversed)"
    close = synthetic((0.80, 0.90, 0.97), (0.75, 0.85, 0.95), accuracies=(0.70, 0.705, 0.71))
    assert oo.judge(close)[0]["verdict"] == "not settled (seed 0: accuracies within noise)"


def test_ppo_peaks_are_read_path_by_path_and_the_exploit_is_on_the_raw_score():
    results = synthetic((0.80, 0.90, 0.97), (0.75, 0.85, 0.95))
    s = results["seeds"]["0"]
    # a second leash whose path ends high: its peak is its own last points' mean, not one
    # smoothed across the join with the first path (and the start counted twice)
    rm = s["reward_models"]["4000"]
    rm["ppo"]["0.01"] = [{"step": 25 * (i + 1), "kl": 0.5 * (i + 1), "reward": g,
                          "rm_score": 0.1, "unfinished": 0.0}
                         for i, g in enumerate([0.7, 0.8, 0.9, 1.0, 1.0])]
    assert oo.ppo_peak(s, "4000")["gold"] == pytest.approx(1.0)
    # the raw score falls while fewer answers never end: the score PPO maximises (less 1 for
    # each unfinished answer) rose, the reward model was not gamed: reversed, not beyond
    for rm in s["reward_models"].values():
        for i, p in enumerate(rm["ppo"]["0"]):
            p["rm_score"], p["unfinished"] = 1.0 - 0.1 * i, max(0.0, 0.9 - 0.3 * i)
    assert oo.judge(results)[2]["verdict"] == "does not hold: reversed (1 of 1 seeds)"


@pytest.mark.parametrize("alpha, beta, kind, words", [
    (0.5, -0.1, "bon", "no peak (beta <= 0)"),
    (-0.1, 0.05, "bon", "none: falls from the start (alpha <= 0)"),
    (0.5, 1e-4, "rl", "(past the data)"),                 # exp(alpha / beta - 1): no overflow
    (0.3, 0.5, "bon", "0.30")])
def test_a_fits_peak_is_named_where_the_data_cannot_show_it(alpha, beta, kind, words):
    d = np.linspace(0.1, 2.0, 12)
    r = alpha * d - beta * (d * d if kind == "bon" else d * np.log(d))
    results = synthetic((0.80, 0.90, 0.97), (0.75, 0.85, 0.95))
    for rm in results["seeds"]["0"]["reward_models"].values():
        rm["best_of"] = [{"n": i, "gold": 0.6 + g, "kl": x * x, "proxy": 0.0}
                         for i, (x, g) in enumerate(zip(d, r))]
        rm["ppo"]["0"] = [{"step": i, "kl": x * x, "reward": 0.6 + g, "rm_score": 0.0,
                           "unfinished": 0.0} for i, (x, g) in enumerate(zip(d, r))]
    fit = oo.fits(results)["4000"][kind]
    assert fit["alpha"] == pytest.approx(alpha, abs=1e-6)
    assert words in oo.fit_peak(fit)
