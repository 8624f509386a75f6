"""compare.py: the tie-free best-of-N KL against an exact computation, the plan (each seed's
SFT model and reward model trained once for every method, its DPO runs from the SFT model in
the seed's folder), the claim verdicts, the typed results, and the whole --smoke run (every
method, the plot, the tables, compare.json's contract)."""
import json
import math

import pytest

from experiments import compare, sweep
from experiments.claims import checks, judge, lora_and_simpo_halve_memory, memory_ratios
from experiments.ceiling import best_of_n_bound
from experiments.measure import BEST_OF
from experiments.methods import EXTRAS, METHODS, chains
from experiments.report import memory_table
from experiments.results import Log, Results, Run, every, ms, ratio, verdict


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


def test_verdicts():
    assert every([0.9, 0.8], [0.7, 0.6]) and not every([0.9, 0.5], [0.7, 0.6])
    assert every([0.1, 0.2], [0.7, 0.6], above=False)
    assert not every([], [])                        # no seeds: nothing holds
    assert verdict(True) == "holds" and verdict(False) == "does not hold"
    assert verdict(False, False) == "mixed"


def test_a_mean_with_a_nan_says_how_many_seeds_it_has():
    assert ms([0.5, 0.7]) == "0.600 ± 0.141"
    assert ms([0.5, math.nan, 0.7]) == "0.600 ± 0.141 (n = 2 of 3)"
    assert ms([math.nan]) == "n/a"


def test_memory_ratios_with_nothing_added_are_not_judged():
    # a smoke-sized model can leave a process's peak memory where it started: 0 MiB added
    results = Results(memory={k: {"0": 0.0} for k in ("DPO", "LoRA-DPO", "SimPO", "GRPO", "RLHF")})
    for claim in (lora_and_simpo_halve_memory, memory_ratios):
        assert any(math.isnan(x) for x in claim(results).numbers)  # judge(): "not run"
    assert "nan%" in memory_table(results)
    assert ratio(3.0, 2.0) == 1.5 and math.isnan(ratio(3.0, 0.0))


def test_a_claim_is_judged_from_its_numbers_never_its_text(monkeypatch):
    from experiments import claims
    made = [claims.Claim("a", "s", "r", "n/a, nan in the text", "holds", [1.0, 2.0]),
            claims.Claim("b", "s", "r", "0.5 ± 0.1", "holds", [1.0, math.nan]),
            claims.Claim("c", "s", "r", "0.5 ± 0.1", "holds", [])]
    monkeypatch.setattr(claims, "CLAIMS", [lambda res, c=c: c for c in made])
    assert [c.verdict for c in judge(Results())] == ["holds", "not run", "not run"]


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
    # the smoke run trains each method at one knob value: a claim about three is not judged
    assert rows["PPO is less stable than DPO"].verdict == "not run"
    # the checks carry no verdict; the models each script held were measured, not written
    held = {c.what: c.measured for c in checks(results)}["RLHF holds 4 models, DPO and GRPO 2 "
                                                           "(SimPO 1, LoRA 1, PPO on the true "
                                                           "reward 3)"]
    for title, n in (("PPO + reward model (RLHF)", 4), ("DPO + NLL (RPO, the default)", 2),
                     ("SimPO", 1), ("LoRA-DPO (r = 8)", 1), ("GRPO", 2),
                     ("PPO on the true reward (no reward model)", 3)):
        assert f"{title}: {n} ± 0" in held
