"""compare.py: the tie-free best-of-N KL against an exact computation, the plan (each seed's
SFT model and reward model trained once for every method, its DPO runs from the SFT model in
the seed's folder), the claim verdicts, the typed results, the whole --smoke run (every
method, the plot, the tables, compare.json's contract) and its --comparisons run on more
held-out prompts."""
import json
import math

import pytest
import torch

from experiments import compare, sweep
from experiments import claims
from experiments.claims import Comparison, checks, judge, judge_comparison, judge_seeds
from experiments.ceiling import best_of_n_bound
from experiments.measure import BEST_OF
from experiments.methods import EXTRAS, METHODS, chains
from experiments.report import memory_table
from experiments.results import Log, Results, Run, ms, ratio
from model import load_checkpoint


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_best_of_n_kl_matches_the_exact_kl_of_many_distinct_outcomes(n):
    # M equally likely answers with distinct rewards: best-of-n picks the k-th worst with
    # probability (k/M)^n - ((k-1)/M)^n, so KL(best-of-n || base) = sum q log(q M)
    M = 200_000
    q = [(k / M) ** n - ((k - 1) / M) ** n for k in range(1, M + 1)]
    exact = sum(x * math.log(x * M) for x in q if x > 0)
    assert best_of_n_bound(n) == pytest.approx(exact, abs=1e-3)


def test_every_method_shares_its_seeds_sft_model_and_ppo_its_reward_model(tmp_path):
    planned = chains(smoke=False)
    assert all(c[0] == ["train_sft.py"] for c in planned.values())
    runs, todo = sweep.plan(list(planned.values()), [0, 1], tmp_path)
    assert len(runs) == 2 * len(planned)
    scripts = [step.argv[0] for step in todo]
    assert scripts.count("train_sft.py") == 2 + 2          # one per seed, + the SFT control
    assert scripts.count("train_rm.py") == 2               # one per seed, for 3 PPO runs each
    folders = [step.folder for step in todo]
    assert len(set(folders)) == len(folders) - 2            # SFT and RM share the seed folder
    dpo = [step.argv for step in todo if step.argv[0] == "train_dpo.py"]
    assert all(a[a.index("--init_from") + 1].startswith(("{seed_dir}/", "{out_dir}/")) for a in dpo)


def test_the_rule_has_four_verdicts_and_each_can_be_reached():
    b, w, r = "beyond", "within", "reversed"
    assert judge_seeds({"0": b, "1": b, "2": b}) == "holds (3 of 3 seeds)"
    assert judge_seeds({"0": w, "1": w, "2": w}) == \
        "does not hold: no difference that matters (3 of 3 seeds)"
    assert judge_seeds({"0": r, "1": r}) == "does not hold: reversed (2 of 2 seeds)"
    assert judge_seeds({"0": b, "1": w, "2": b}) == \
        "not settled (seed 0: beyond, seed 1: within, seed 2: beyond)"
    # "matches or beats": no seed reversed holds; one reversed does not settle it
    assert judge_seeds({"0": b, "1": w}, "not above") == "holds (2 of 2 seeds)"
    assert judge_seeds({"0": w, "1": r}, "not below").startswith("not settled")
    # a seed without its number is named, never dropped silently; none at all: not run
    assert judge_seeds({"0": b, "1": None}) == "not settled (seed 0: beyond, seed 1: no number)"
    assert judge_seeds({"0": None}) == "not run"


def test_a_comparison_is_paired_by_seed_and_its_delta_has_a_noise_floor():
    """Arms a and b differ by +0.05, +0.03 and +0.04 on three seeds whose levels differ by
    0.3 (a foundation draw both arms share): paired, every seed is beyond a delta of 0.02;
    with 2 SE of evaluation noise at 0.04, seed 1 is within, and the claim is not settled."""
    runs = [Run(method=m, knob="0.1", seed=s, stage="dpo",
                numbers={"dpo/reward_mean": level + (d if m == "dpo" else 0.0)})
            for s, level, d in ((0, 0.9, 0.05), (1, 0.6, 0.03), (2, 0.9, 0.04))
            for m in ("dpo", "kto")]
    res = Results(runs=runs, sft={s: {} for s in "012"})
    c = Comparison("x", "a beats b", "s", "reward", ("dpo", "0.1"), ("kto", "0.1"), "above",
                   0.02)
    assert judge_comparison(res, c).verdict == "holds (3 of 3 seeds)"
    res.noise = {"x": {"0": 0.01, "1": 0.02, "2": 0.015}}        # 2 SE = 0.02, 0.04, 0.03
    assert judge_comparison(res, c).verdict == "not settled (seed 0: beyond, seed 1: within " \
        "the noise (delta 0.040), seed 2: beyond)"                      # each seed its own delta
    res.noise = {"x": {"0": 0.005, "1": 0.005, "2": 0.005}}
    same = Comparison("x", "a matches b", "s", "reward", ("dpo", "0.1"), ("kto", "0.1"),
                      "not below", 0.06)
    assert judge_comparison(res, same).verdict == "holds (3 of 3 seeds)"     # within 0.06
    bigger = Comparison("x", "a beats b", "s", "reward", ("dpo", "0.1"), ("kto", "0.1"),
                        "above", 0.06)
    assert judge_comparison(res, bigger).verdict == \
        "does not hold: no difference that matters (3 of 3 seeds)"
    res.noise = {"x": {"0": 0.05, "1": 0.05, "2": 0.05}}         # 2 SE = 0.1 > declared 0.06:
    assert judge_comparison(res, same).verdict.startswith("not settled (seed 0: within the "
                                                          "noise")  # "matches" is not shown
    below = Comparison("y", "a below b", "s", "reward", ("dpo", "0.1"), ("kto", "0.1"),
                       "below", 0.02)
    res.noise = {}
    assert judge_comparison(res, below).verdict == "does not hold: reversed (3 of 3 seeds)"


def test_every_comparison_names_runs_compare_makes_and_a_metric_it_reads():
    names = set(METHODS) | set(EXTRAS) | {"sft"}
    for c in claims.COMPARISONS:
        assert c.metric in claims.METRICS and c.form in ("above", "below", "not above",
                                                         "not below") and c.delta > 0
        for arm in (c.a, c.b):
            if arm is not None and arm[0] in METHODS:
                assert arm[1] in METHODS[arm[0]].values, (c.name, arm)
            assert arm is None or arm[0] in names, (c.name, arm)
    assert len({c.name for c in claims.COMPARISONS}) == len(claims.COMPARISONS)


def test_a_mean_with_a_nan_says_how_many_seeds_it_has():
    assert ms([0.5, 0.7]) == "0.600 ± 0.141"
    assert ms([0.5, math.nan, 0.7]) == "0.600 ± 0.141 (n = 2 of 3)"
    assert ms([math.nan]) == "n/a"


def test_memory_ratios_with_nothing_added_are_not_judged():
    # a smoke-sized model can leave a process's peak memory where it started: 0 MiB added
    results = Results(memory={k: {"0": 0.0} for k in ("DPO", "LoRA-DPO", "SimPO", "GRPO", "RLHF")},
                      sft={"0": {}})
    memory = [c for c in judge(results) if "memory" in c.claim]
    assert len(memory) == 4 and all(c.verdict == "not run" for c in memory)
    assert "nan%" in memory_table(results)
    assert ratio(3.0, 2.0) == 1.5 and math.isnan(ratio(3.0, 0.0))


def test_results_survive_compare_json(tmp_path):
    run = Run(method="dpo", knob="0.1", seed=0, stage="dpo",
              numbers={"dpo/reward_mean": 0.9, "rm/train_seconds": 3.0},
              log=Log(first={"loss": 0.69}, middle={}, last={"rewards/margins": 2.0},
                      median_dt=0.1, steps=150))
    saved = Results(runs=[run], sft={"0": {"reward_mean": 0.6}}, promised={"dpo": {}})
    saved.save(tmp_path / "compare.json")
    loaded = Results.load(tmp_path / "compare.json")
    assert loaded == saved
    assert loaded.column("dpo", "0.1", "reward_mean") == {"0": 0.9}
    assert run.get("train_seconds", "rm") == 3.0 and math.isnan(run.get("kl_to_ref"))
    assert run.logged("last", "rewards/margins") == 2.0


def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        compare.main(["--smoke", "--out", str(tmp_path / "taken")])
    assert "runs" not in capsys.readouterr().out                  # nothing was planned


def test_an_unknown_comparison_is_refused_with_the_names_there_are(tmp_path):
    with pytest.raises(SystemExit, match="no comparison nope .they are: paper_beta_kl, "):
        compare.main(["--smoke", "--comparisons", "nope", "--out", str(tmp_path)])


def test_smoke_run_writes_the_plot_and_every_table(tmp_path):
    results = compare.main(["--smoke", "--out", str(tmp_path)])
    assert not results.failed
    assert {r.method for r in results.runs} == set(METHODS) | set(EXTRAS)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert set(saved["best_of_n"]["0"]) == {str(n) for n in BEST_OF}
    assert set(saved["best_of_n"]["0"]["4"]) == {"reward", "kl", "kl_bound"}
    assert len(saved["ceiling"]["0"]) >= 12 and {"beta", "kl", "reward"} <= set(
        saved["ceiling"]["0"][0])
    promised = {m.name for m in METHODS.values() if m.promise}
    assert set(saved["promised"]) == promised and len(promised) >= 3
    for name in promised:
        assert set(saved["promised"][name]) == set(METHODS[name].values)
        assert {"kl", "reward"} <= set(saved["promised"][name][METHODS[name].values[0]])
    assert set(saved["memory"]) == {"DPO", "LoRA-DPO", "SimPO", "GRPO", "RLHF"}
    assert (tmp_path / "frontier.png").stat().st_size > 10_000
    text = (tmp_path / "compare.md").read_text()
    for heading in ("## The frontier", "## The ceiling", "## Where the derivation", "## Resources",
                    "## Distance from the ceiling", "## Memory", "## The first article's",
                    "## The articles' claims", "## Checks"):
        assert heading in text
    assert text.index("verdicts mean nothing") < text.index("## The frontier")
    # the report again from compare.json alone: the same page, nothing trained or measured
    compare.main(["--report", str(tmp_path / "compare.json"), "--out", str(tmp_path / "again")])
    assert (tmp_path / "again" / "compare.md").read_text() == text
    rows = {c.claim: c for c in judge(results)}
    # the smoke run trains each method at its first knob value: a claim about another is not
    # judged; one about the first is, with the noise of its paired difference measured
    assert rows["GRPO's std scaling lengthens its leash (KL in the loss)"].verdict == "not run"
    assert rows["KTO works from binary labels (no pairs)"].verdict == "not run"
    assert math.isfinite(saved["noise"]["sft_lr_hurts"]["0"])
    assert "## GRPO's leash" in text
    # the checks carry no verdict; the models each script held were measured, not written
    held = {c.what: c.measured for c in checks(results)}["RLHF holds 4 models, DPO and GRPO 2 "
                                                           "(SimPO 1, LoRA 1, PPO on the true "
                                                           "reward 3)"]
    for title, n in (("PPO + reward model (RLHF)", 4), ("DPO + NLL (RPO, the default)", 2),
                     ("SimPO", 1), ("LoRA-DPO (r = 8)", 1), ("GRPO", 2),
                     ("PPO on the true reward (no reward model)", 3)):
        assert f"{title}: {n} ± 0" in held


def test_comparisons_on_more_prompts_run_only_their_arms_paired_with_the_same_sft_model(
        tmp_path):
    """--comparisons --eval_prompts N: the runs the comparison claims read, every one (and the
    SFT model, in a run of its own that trains nothing) evaluated on N prompts, the noise
    paired on those N; the seed's SFT model is the one the runs start from."""
    results = compare.main(["--smoke", "--comparisons", "--eval_prompts", "24",
                            "--out", str(tmp_path)])
    arms = {arm for c in claims.COMPARISONS for arm in (c.a, c.b) if arm}
    assert not results.failed and not results.memory
    assert {(r.method, r.knob) for r in results.runs} == (arms & set(chains(True))) | {("sft", "")}
    for r in results.runs:
        rows = (tmp_path / r.folder / f"{r.stage}_samples.jsonl").read_text().splitlines()
        assert len(rows) == 24, r.folder
    again = results.runs_of("sft")["0"]
    assert results.sft["0"] == json.loads((tmp_path / again.folder / "sft_eval.json").read_text())
    assert results.sft["0"]["reward_mean"] != json.loads(
        (tmp_path / "seed0" / "sft_eval.json").read_text())["reward_mean"]    # 24 prompts, not 16
    trained, evaluated = (load_checkpoint(f)[0].state_dict() for f in
                          (tmp_path / "seed0" / "sft.pt", tmp_path / again.folder / "sft.pt"))
    assert all(torch.equal(trained[k], evaluated[k]) for k in trained)
    assert math.isfinite(results.noise["sft_lr_hurts"]["0"])          # paired on the 24
    text = (tmp_path / "compare.md").read_text()
    assert "evaluated on 24 held-out prompts" in text and "## The articles' claims" in text
    assert "## The frontier" not in text and "## Checks" not in text
    assert not (tmp_path / "frontier.png").exists()


def test_a_regret_claim_widens_delta_by_the_ceilings_error_and_names_a_kl_below_0():
    """Regret against 0, "not above": within delta holds; above it is reversed; below -delta
    is the ceiling's estimate falling short, not the run; the ceiling's own error (J* from M
    answers against 2M) adds to the noise, and past the declared delta leaves it unsettled."""
    c = next(c for c in claims.COMPARISONS if c.metric == "regret")
    method, knob = c.a
    res = Results(sft={s: {} for s in "012"}, runs=[
        Run(method=method, knob=knob, seed=int(s), stage="dpo",
            numbers={"dpo/kl_to_ref": kl}) for s, kl in (("0", 1.0), ("1", 1.0), ("2", -0.05))])
    res.distance = {s: {method: {knob: {"regret": r}}} for s, r in
                    (("0", 0.01), ("1", 0.1), ("2", -0.1))}
    claim = judge_comparison(res, c)
    assert claim.verdict == "not settled (seed 0: within, seed 1: reversed, seed 2: regret " \
        "below -delta: the ceiling's estimate, not the run)"
    assert "seed 2: KL -0.050 < 0, not fed to the regret" in claim.measured
    res.distance = {s: {method: {knob: {"regret": 0.01}}} for s in "012"}
    assert judge_comparison(res, c).verdict == "holds (3 of 3 seeds)"
    res.noise = {c.name: {s: 0.005 for s in "012"}}          # 2 SE = 0.01, below the declared
    res.ceiling_check = {"max_value_change": 0.03}            # + 0.03: delta 0.04 > 0.02
    assert judge_comparison(res, c).verdict.startswith("not settled (seed 0: within the noise "
                                                       "(delta 0.040)")
