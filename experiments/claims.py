"""The claims of the two articles this project grew from, and this project's own findings,
each against compare's numbers; and the checks, statements true by construction, measured
to confirm the code.

The articles: "From DPO to GRPO: Direct Preference Optimization" (FIRST below: the method-
selection table and its resource bars) and "DPO: Direct Preference Optimization" (SECOND:
beta, learning rates, the debugging checklist, LoRA, the variants). Each claim is one
function of compare's results that returns a Claim: what is claimed and where (OWN: a finding
of this project's, not an article's), the runs that test it, what was measured (mean ± std
over seeds), the numbers its rule reads, and a verdict computed from those numbers by the
rule its docstring states, a rule that the data could make hold or fail. A claim with a
number missing (NaN, or no number at all) is "not run". A check has no verdict: it is true by
the code's construction (DPO's loss at step 0, the models a script holds, the statistics of a
group mean), and the measurement shows the code does what it says.
"""

import math
from dataclasses import dataclass

from experiments.methods import EXTRAS, METHODS, command
from experiments.measure import GROUP_SIZES
from experiments.results import (Results, distance, every, mean, middle, ms, paired, ratio,
                                 resources, std, verdict)
from experiments.sweep import summarize

FIRST = '"From DPO to GRPO: Direct Preference Optimization"'
SECOND = '"DPO: Direct Preference Optimization"'
OWN = "this project's own finding"
DV = "0.1"                                           # the default DPO run's beta
PAPER, DPO, IPO, SIMPO, KTO, ORPO, GRPO, PPO, ITERATIVE, GRPO_JUDGE, GRPO_KL_REWARD, RLOO = (
    METHODS[k] for k in ("paper_dpo", "dpo", "ipo", "simpo", "kto", "orpo", "grpo", "ppo",
                         "iterative_dpo", "grpo_judge", "grpo_kl_reward", "rloo"))


@dataclass
class Claim:
    claim: str
    source: str       # the article, and the paper behind the claim where there is one
    runs: str         # the step each run adds after train_sft.py, or what was measured
    measured: str     # mean ± std over seeds
    verdict: str
    numbers: list     # what the rule read: a NaN among them, or none, and it is "not run"

    def row(self) -> list[str]:
        return [self.claim, self.source, self.runs, self.measured, self.verdict]


@dataclass
class Check:
    """A statement true by construction, measured to confirm the code: no verdict."""
    what: str
    source: str
    runs: str
    measured: str

    def row(self) -> list[str]:
        return [self.what, self.source, self.runs, self.measured]


def logged(res: Results, method: str, knob: str, when: str, metric: str) -> dict[str, float]:
    """{seed: a training metric at the first, middle or last logged steps} of one run."""
    return {s: r.logged(when, metric) for s, r in res.runs_of(method, knob).items()}


def loss_starts_at_ln2(res) -> Check:
    """At step 0 the policy is the reference, so the margin h is 0 and -log sigmoid(0) = ln 2."""
    first = [x for v in PAPER.values for x in logged(res, PAPER.name, v, "first",
                                                     "loss").values()]
    return Check("DPO's loss is ln 2 at the start (policy = reference)",
                 f"{SECOND}; Rafailov et al. 2023, Eq. 7", command(PAPER, "B") +
                 ", the loss logged at step 0",
                 f"{ms(first, '.4f')} over {len(first)} runs (ln 2 = {math.log(2):.4f})")


def models_in_memory(res) -> Check:
    """The distinct sets of transformer weights each script held as training started: what its
    code builds (plumbing.loop.models_in_memory counts them)."""
    held = resources(res, METHODS.values())
    return Check("RLHF holds 4 models, DPO and GRPO 2 (SimPO 1, LoRA 1, PPO on the true "
                 "reward 3)", FIRST, "models_in_memory, logged at step 0 of every method's "
                 "middle run", ", ".join(f"{m.title}: {ms(held[m.name]['models'], '.0f')}"
                                         for m in METHODS.values()))


def group_size_lowers_variance(res) -> Check:
    """The std of a group's mean falls as 1/sqrt(G), and sampling G answers costs about G
    times one: statistics and arithmetic, measured on the SFT model's answers."""
    gb = res.group_baseline
    std_g, sec_g, zero_g = ([mean(g[str(G)][k] for g in gb.values()) for G in GROUP_SIZES]
                            for k in ("baseline_std", "sample_seconds", "frac_zero_std"))
    return Check("A larger group G lowers the variance of GRPO's advantage, at a linear cost",
                 f"{FIRST}; Shao et al. 2024", "the SFT model's 64 answers to each of 64 "
                 "held-out prompts (the ceiling's), in groups of G",
                 "std of the group-mean baseline " + ", ".join(
                     f"{s:.3f} (G = {G})" for s, G in zip(std_g, GROUP_SIZES)) +
                 "; groups with one reward for all (no gradient) " + ", ".join(
                     f"{z:.2f}" for z in zero_g) + "; seconds to sample G answers per prompt: "
                 f"x{ratio(sec_g[-1], sec_g[0]):.1f} from G = {GROUP_SIZES[0]} to "
                 f"{GROUP_SIZES[-1]}")


CHECKS = [loss_starts_at_ln2, models_in_memory, group_size_lowers_variance]


def higher_beta_lower_kl(m):
    def claim(res) -> Claim:
        """Holds when on every seed the KL to the SFT model falls at each step up in beta."""
        kls = [res.column(m.name, v, "kl_to_ref") for v in m.values]
        seqs = list(zip(*paired(*kls))) if all(kls) else []
        return Claim(f"Higher beta keeps the policy closer to the reference ({m.title})",
                     f"{SECOND} (beta); {FIRST}", command(m, "B") + f", B = {', '.join(m.values)}",
                     "KL " + "; ".join(f"{ms(k.values(), '.2f')} at {v}"
                                       for v, k in zip(m.values, kls)),
                     verdict(bool(seqs) and all(all(a > b for a, b in zip(s, s[1:]))
                                                for s in seqs)), [x for s in seqs for x in s])
    claim.__name__ = f"higher_beta_lower_kl({m.name})"
    return claim


def sft_learning_rate_hurts(res) -> Claim:
    """The paper's loss (no NLL term), at SFT's learning rate (1e-3) and at 1/33 of it (3e-5,
    inside the article's 10-50x). Holds when at SFT's rate it ends below the SFT model on every
    seed and at 1/33 of it above; does not hold when at SFT's rate it ends above the SFT model
    on every seed; mixed otherwise."""
    high, low, s = paired(res.column("paper_dpo_sft_lr", "", "reward_mean"),
                          res.column("paper_dpo_low_lr", "", "reward_mean"), res.sft_column())
    return Claim("DPO needs a learning rate 10-50x below SFT's; at SFT's it ends worse than the "
                 "SFT model", SECOND, f"{EXTRAS['paper_dpo_sft_lr'][-1]} (SFT's) and "
                 f"{EXTRAS['paper_dpo_low_lr'][-1]} (1/33 of it)",
                 f"true reward {ms(high)} at 1e-3 and {ms(low)} at 3e-5, against {ms(s)} for the "
                 "SFT model", verdict(every(high, s, above=False) and every(low, s),
                                      every(high, s)), high + low + s)


def small_set_overfits(res) -> Claim:
    """The warning sign (a last margin above 10 with the DPO part of the loss below 0.1) and
    the harm (true reward below the default run's on every seed): holds with both, partly
    with one, does not hold with neither."""
    margin, dpo_part, small, full = paired(
        logged(res, "dpo_small_set", "", "last", "rewards/margins"),
        logged(res, "dpo_small_set", "", "last", "dpo_loss"),
        res.column("dpo_small_set", "", "reward_mean"), res.column(DPO.name, DV, "reward_mean"))
    sign, harm = bool(margin) and mean(margin) > 10 and mean(dpo_part) < 0.1, \
        every(small, full, above=False)
    return Claim("Many epochs on a small pair set overfit: margin > 10, loss near 0, quality "
                 "falls", SECOND, EXTRAS["dpo_small_set"][-1] + " (about 110 pairs, 150 steps of "
                 "32: about 40 epochs) against the default 2000 prompts",
                 f"last margin {ms(margin, '.2f')}, DPO loss {ms(dpo_part)}; true reward "
                 f"{ms(small)} against {ms(full)}",
                 "holds" if sign and harm else "partly" if sign or harm else "does not hold",
                 margin + dpo_part + small + full)


def long_chosen_teach_length(res) -> Claim:
    """Holds when, on every seed, DPO with the length-biased labeller answers longer than with
    the true one."""
    dl, d0 = paired(res.column("dpo_long_judge", "", "mean_length"),
                    res.column(DPO.name, DV, "mean_length"))
    return Claim("Chosen answers much longer than rejected teach length",
                 f"{SECOND} (debugging checklist)", EXTRAS["dpo_long_judge"][-1] +
                 " (a labeller that adds 0.03 a word)",
                 f"DPO's answers {ms(dl, '.1f')} tokens against {ms(d0, '.1f')} with the true "
                 "labeller", verdict(every(dl, d0)), dl + d0)


def simpo_stops_length(res) -> Claim:
    """Holds when SimPO's length gain from the biased labeller is under half of DPO's."""
    dl, d0, sl, s0 = paired(res.column("dpo_long_judge", "", "mean_length"),
                            res.column(DPO.name, DV, "mean_length"),
                            res.column("simpo_long_judge", "", "mean_length"),
                            res.column(SIMPO.name, "2.0", "mean_length"))
    gain_d, gain_s = mean(dl) - mean(d0), mean(sl) - mean(s0)
    return Claim("SimPO's length normalisation keeps a length-biased labeller from teaching "
                 "length", f"{OWN} (SimPO: Meng et al. 2024)",
                 EXTRAS["simpo_long_judge"][-1],
                 f"SimPO's answers {ms(sl, '.1f')} tokens against {ms(s0, '.1f')} with the true "
                 f"labeller: {gain_s:+.1f} against DPO's {gain_d:+.1f}",
                 verdict(bool(sl) and gain_s < gain_d / 2, bool(sl) and gain_s >= gain_d / 2),
                 dl + d0 + sl + s0)


def ipo_bounds_the_margin(res) -> Claim:
    """IPO's last margin below 1.0 on every seed (twice its target) is bounded; holds when
    DPO's also grew from the middle to the end on every seed, partly when only on the mean."""
    im, il, dm, dl = (list(logged(res, m.name, v, w, "rewards/margins").values())
                      for m, v, w in ((IPO, "0.5", "middle"),
                      (IPO, "0.5", "last"), (DPO, DV, "middle"), (DPO, DV, "last")))
    bounded = bool(il) and all(x < 1.0 for x in il)
    return Claim("IPO keeps the margin bounded where DPO's grows", f"{FIRST}; Azar et al. 2023",
                 command(IPO, "0.5") + " and " + command(DPO, DV) + ": rewards/margins over the "
                 "middle and last 10 logged steps",
                 f"IPO {ms(im)} -> {ms(il)} (its target tau x 1/(2 tau) = 0.5); DPO {ms(dm)} -> "
                 f"{ms(dl)}", "holds" if bounded and every(dl, dm) else "partly: IPO's is "
                 "bounded, DPO's grew on the mean, not on every seed" if bounded and
                 mean(dl) > mean(dm) else "does not hold", im + il + dm + dl)


def beats_sft(m, text, source):
    def claim(res) -> Claim:
        """Holds when the method's true reward is above the SFT model's on every seed."""
        x, s, d = paired(res.column(m.name, "0.1", "reward_mean"), res.sft_column(),
                         res.column(DPO.name, DV, "reward_mean"))
        return Claim(text, source, command(m, "0.1"), f"true reward {ms(x)} against {ms(s)} for "
                     f"the SFT model ({ms(d)} for DPO)", verdict(every(x, s)), x + s)
    claim.__name__ = f"beats_sft({m.name})"
    return claim


def needs_sft_first(res) -> Claim:
    """Holds when DPO from the pretrained model ends below DPO from the SFT model on the same
    written pairs on every seed; does not hold when above on every seed."""
    pre, off = paired(res.column("dpo_from_pretrained", "", "reward_mean"),
                      res.column("dpo_offpolicy", "", "reward_mean"))
    return Claim("DPO started from a model that was never SFT'd trains poorly",
                 f"{SECOND} (common mistakes)", EXTRAS["dpo_from_pretrained"][-1],
                 f"true reward {ms(pre)} against {ms(off)} from the SFT model on the same pairs",
                 verdict(every(pre, off, above=False), every(pre, off)), pre + off)


def onpolicy_beats_offpolicy(res) -> Claim:
    """Holds when the SFT model's own judged samples give a higher true reward than the
    persona generator's written pairs on every seed; does not hold when lower on every seed."""
    on, off, won, woff = paired(
        res.column(DPO.name, DV, "reward_mean"), res.column("dpo_offpolicy", "", "reward_mean"),
        res.column(DPO.name, DV, "win_rate_vs_sft"),
        res.column("dpo_offpolicy", "", "win_rate_vs_sft"))
    return Claim("On-policy pairs (the SFT model's own samples) beat off-policy pairs",
                 f"{FIRST} (offline distribution shift)",
                 f"{command(DPO, DV)} against {EXTRAS['dpo_offpolicy'][-1]}",
                 f"true reward {ms(on)} against {ms(off)}; win rate {ms(won)} against {ms(woff)}",
                 verdict(every(on, off), every(off, on)), on + off)


MEMORY_RUNS = "a 25M-parameter model (8 x 512), a few steps of each script, one batch shape " \
    "(experiments/methods.py, MEMORY): the peak resident memory each process added to its start"


def memory_of(res) -> dict[str, list[float]]:
    return {name: list(per_seed.values()) for name, per_seed in res.memory.items()}


def lora_and_simpo_halve_memory(res) -> Claim:
    """Holds for each of LoRA (adapters-off reference) and SimPO (no reference) whose memory
    is at most 55% of DPO's on the 25M-parameter model; "partly" when one of them does."""
    mb = memory_of(res)
    pct = {k: ratio(mean(mb.get(k, [])), mean(mb.get("DPO", []))) * 100
           for k in ("LoRA-DPO", "SimPO")}
    halved = [k for k, v in pct.items() if v <= 55]
    return Claim("LoRA (adapters-off reference) and SimPO (no reference) halve DPO's memory",
                 f"{SECOND} (LoRA, SimPO); Meng et al. 2024", MEMORY_RUNS,
                 f"LoRA-DPO {ms(mb.get('LoRA-DPO', []), '.0f')} MiB ({pct['LoRA-DPO']:.0f}% of "
                 f"DPO's), SimPO {ms(mb.get('SimPO', []), '.0f')} ({pct['SimPO']:.0f}%), DPO "
                 f"{ms(mb.get('DPO', []), '.0f')}", "holds" if len(halved) == 2 else
                 f"partly: {halved[0]} only" if halved else "does not hold", list(pct.values()))


def memory_ratios(res) -> Claim:
    """Holds when DPO's and GRPO's memory on the 25M-parameter model are within 15 points of
    40% and 60% of RLHF's (reward model and PPO, the larger); "the order holds" when only
    DPO < GRPO < RLHF does."""
    mb = memory_of(res)
    pct = [ratio(mean(mb.get(k, [])), mean(mb.get("RLHF", []))) * 100 for k in ("DPO", "GRPO")]
    close = all(abs(g - s) <= 15 for g, s in zip(pct, (40, 60)))
    ordered = pct[0] < pct[1] < 100
    return Claim("Training memory: RLHF 100%, DPO 40%, GRPO 60%", f"{FIRST} (resource bars)",
                 MEMORY_RUNS, f"DPO {pct[0]:.0f}%, GRPO {pct[1]:.0f}% of RLHF's "
                 f"({ms(mb.get('RLHF', []), '.0f')} MiB)", "holds" if close and ordered else
                 "the order holds, the ratios do not" if ordered else "does not hold", pct)


def time_ratios(res) -> Claim:
    """Holds when DPO's and GRPO's training times are within 15 points of 30% and 60% of
    RLHF's; "the order holds" when only DPO < GRPO < RLHF does."""
    used = resources(res, (PPO, DPO, GRPO))
    pct = [mean(used[m.name]["train_seconds"]) / mean(used[PPO.name]["train_seconds"]) * 100
           for m in (DPO, GRPO)]
    close = all(abs(g - s) <= 15 for g, s in zip(pct, (30, 60)))
    ordered = pct[0] < pct[1] < 100
    return Claim("Training time: RLHF 100%, DPO 30%, GRPO 60%", f"{FIRST} (resource bars)",
                 "the resources table (middle knob values)",
                 f"DPO {pct[0]:.0f}%, GRPO {pct[1]:.0f}% of RLHF's",
                 "holds" if close and ordered else "the order holds, the ratios do not"
                 if ordered else "does not hold", pct)


def dpo_faster_than_rlhf(res) -> Claim:
    """Holds when RLHF's training time (reward model + PPO) is 3 to 10 times DPO's."""
    used = resources(res, (PPO, DPO))
    times = ratio(mean(used[PPO.name]["train_seconds"]), mean(used[DPO.name]["train_seconds"]))
    return Claim("DPO trains 3-10x faster than RLHF", SECOND, "the resources table",
                 f"RLHF (reward model + PPO) took {times:.1f}x DPO's training time",
                 verdict(3 <= times <= 10), [times])


def ppo_less_stable(res) -> Claim:
    """Holds when PPO's true reward varies more than DPO's both over seeds (at the middle knob)
    and over the knob (range of the means); does not hold when less on both."""
    spread = {}
    for m in (PPO, DPO):
        r = {v: list(res.column(m.name, v, "reward_mean").values()) for v in m.values}
        means = [mean(x) for x in r.values() if x]
        seeds = summarize(r[middle(res, m)]) if means else {"n": 0}
        spread[m] = (seeds["std"] if seeds["n"] > 1 else math.nan,
                     max(means) - min(means) if len(means) > 1 else math.nan)
    return Claim("PPO is less stable than DPO", f"{FIRST}; {SECOND}",
                 f"{command(PPO, 'K')}, K = {', '.join(PPO.values)}; {command(DPO, 'B')}, B = "
                 f"{', '.join(DPO.values)}", f"true reward std over seeds {spread[PPO][0]:.3f} "
                 f"(PPO) against {spread[DPO][0]:.3f} (DPO); range of means over the knob "
                 f"{spread[PPO][1]:.3f} against {spread[DPO][1]:.3f}",
                 verdict(all(p > d for p, d in zip(spread[PPO], spread[DPO])),
                         all(p < d for p, d in zip(spread[PPO], spread[DPO]))),
                 [*spread[PPO], *spread[DPO]])


def nearest(res, m, key: str = "gap") -> tuple[str, list[float]]:
    """(knob value, its distances per seed) of m's run nearest the ceiling: the least mean
    reward gap, or the highest mean KL efficiency."""
    by_value = {v: distance(res, m, v, key) for v in m.values if distance(res, m, v, key)}
    if not by_value:
        return "", []
    pick = min if key == "gap" else max
    v = pick(by_value, key=lambda u: mean(by_value[u]))
    return v, by_value[v]


def dpo_matches_ppo(res) -> Claim:
    """Judged by the distance from the ceiling, which puts every run on one scale whatever KL it
    spent: each method at its knob value nearest the ceiling (least mean reward gap, R*(KL) -
    R). Holds when DPO + NLL's gap is at most PPO's plus one seed std (the larger of the two);
    does not hold when it is more."""
    (dv, dgap), (pv, pgap) = nearest(res, DPO), nearest(res, PPO)
    spread = max(std(dgap), std(pgap)) if dgap and pgap else math.nan
    eff = {m: nearest(res, m, "efficiency") for m in (DPO, PPO)}
    return Claim("DPO matches or beats PPO on the reward-vs-KL frontier",
                 f"{SECOND}; Rafailov et al. 2023, Fig. 2", f"{command(DPO, 'B')}, B = "
                 f"{', '.join(DPO.values)}; {command(PPO, 'K')}, K = {', '.join(PPO.values)}",
                 f"reward gap to the ceiling: DPO + NLL {ms(dgap)} (beta {dv}), PPO {ms(pgap)} "
                 f"(kl_coef {pv}); KL efficiency: DPO + NLL {ms(eff[DPO][1], '.0%')}, PPO "
                 f"{ms(eff[PPO][1], '.0%')}", verdict(mean(dgap) <= mean(pgap) + spread),
                 [mean(dgap), mean(pgap), spread])


def dpo_reaches_its_optimum(res) -> Claim:
    """DPO's loss on Bradley-Terry labels at temperature T is minimised, with enough pairs, by
    pi ∝ pi_ref exp(r / (T beta)): the ceiling at beta' = T beta. Holds when, at every beta,
    the trained policy's mean true reward is within 0.05 of the promised one and its KL within
    a factor 1.5 of it; does not hold when at none."""
    promised = res.promised.get(PAPER.name, {})
    near = []
    for v in PAPER.values:
        kl, rw = (mean(res.column(PAPER.name, v, k).values()) for k in ("kl_to_ref", "reward_mean"))
        p = promised.get(v, {"kl": math.nan, "reward": math.nan})
        near.append((v, kl, rw, p, abs(rw - p["reward"]) < 0.05 and
                     p["kl"] / 1.5 <= kl <= p["kl"] * 1.5))
    return Claim("DPO finds the policy its derivation promises, pi* ∝ pi_ref exp(r / beta)",
                 f"{SECOND}; {FIRST}; Rafailov et al. 2023, Eq. 4", command(PAPER, "B") +
                 f", B = {', '.join(PAPER.values)}; promised: the ceiling at beta' = T beta",
                 "; ".join(f"beta {v}: promised {p['reward']:.3f} at {p['kl']:.2f} nats, "
                           f"reached {rw:.3f} at {kl:.2f}" for v, kl, rw, p, _ in near),
                 verdict(all(n for *_, n in near), not any(n for *_, n in near)),
                 [x for _, kl, rw, p, _ in near for x in (kl, rw, p["kl"], p["reward"])])


def side_by_side(res, a, b, claim: str, source: str) -> Claim:
    """The claim that method a learns more than method b at the same knob values, measured:
    true reward and KL at each value, on the seeds both have. Holds when a's mean true reward
    is higher at every value and on every seed at the middle one; does not hold when lower at
    every value; mixed otherwise."""
    rows = [(v, *paired(*(res.column(m.name, v, k) for k in ("reward_mean", "kl_to_ref")
                          for m in (a, b)))) for v in a.values]      # (v, ra, rb, ka, kb)
    higher = [bool(ra) and mean(ra) > mean(rb) for _, ra, rb, *_ in rows]
    return Claim(claim, source, f"{command(a, 'B')} against {command(b, 'B')}, B = "
                 f"{', '.join(a.values)}", "; ".join(
                     f"{a.knob} {v}: true reward {ms(ra)} at {mean(ka):.2f} nats against "
                     f"{ms(rb)} at {mean(kb):.2f}" for v, ra, rb, ka, kb in rows),
                 verdict(all(higher) and every(rows[1][1], rows[1][2]), not any(higher)),
                 [mean(x) for _, *cols in rows for x in cols])


def online_dpo_beats_offline(res) -> Claim:
    """Iterative DPO (3 rounds, each on pairs of the policy's own answers) against offline DPO +
    NLL (the SFT model's pairs), the same steps, prompts and beta (rule: side_by_side)."""
    return side_by_side(res, ITERATIVE, DPO, "Online (iterative) DPO beats offline DPO: no "
                        "offline distribution shift", f"{FIRST} (DPO's issues: offline "
                        "distribution shift)")


def online_ceiling_above_dpo(res) -> Claim:
    """The performance ceiling, with one reward on both sides (the judge that labels DPO's
    pairs): the article's GRPO (group-std advantage, KL in the loss) against DPO + NLL, each
    at its knob value of highest mean true reward (the same choice on both sides; the other
    online methods are not picked from). Holds when GRPO's true reward is above DPO's on every
    seed; does not hold when below on the mean; mixed otherwise."""
    def best(m):
        rewards = {v: res.column(m.name, v, "reward_mean") for v in m.values}
        v = max(rewards, key=lambda u: mean(rewards[u].values()))
        return v, rewards[v]
    (dv, dpo), (gv, grpo) = best(DPO), best(GRPO_JUDGE)
    g, d = paired(grpo, dpo)
    return Claim("An online method's ceiling is above DPO's (online optimisation against "
                 "offline limitations), with the same reward on both sides",
                 f"{FIRST} (method selection: performance ceiling)", f"{command(GRPO_JUDGE, 'B')} "
                 f"and {command(DPO, 'B')}, each at its best B", f"GRPO {ms(g)} (beta {gv}) "
                 f"against DPO + NLL {ms(d)} (beta {dv})",
                 verdict(every(g, d), mean(g) < mean(d)), g + d)


def grpo_std_beats_rloo(res) -> Claim:
    """GRPO (std-scaled group advantage, k3 in the loss) against RLOO (leave-one-out baseline,
    k1 in the reward, whole answers), each at its knob value nearest the ceiling, by the reward
    gap and by the KL efficiency: equal knob values would not be equal leashes. Holds when
    GRPO is nearer by both measures; does not hold when farther by both; mixed otherwise."""
    (gv, ggap), (rv, rgap) = nearest(res, GRPO_JUDGE), nearest(res, RLOO)
    (ge, geff), (re, reff) = nearest(res, GRPO_JUDGE, "efficiency"), nearest(res, RLOO,
                                                                             "efficiency")
    nearer = [mean(ggap) < mean(rgap), mean(geff) > mean(reff)]
    return Claim("GRPO's group-std advantage lands nearer the ceiling than RLOO",
                 f"{OWN} (GRPO: Shao et al. 2024; RLOO: Ahmadian et al. 2024)",
                 f"{command(GRPO_JUDGE, 'B')}, B = {', '.join(GRPO_JUDGE.values)}; "
                 f"{command(RLOO, 'B')}, B = {', '.join(RLOO.values)}",
                 f"reward gap GRPO {ms(ggap)} (beta {gv}) against RLOO {ms(rgap)} (beta {rv}); "
                 f"KL efficiency GRPO {ms(geff, '.0%')} (beta {ge}) against RLOO "
                 f"{ms(reff, '.0%')} (beta {re})", verdict(all(nearer), not any(nearer)),
                 [mean(x) for x in (ggap, rgap, geff, reff)])


def kl_in_the_reward_lands_nearer(res) -> Claim:
    """GRPO with the KL in the reward (k1 summed over the answer, before the advantages) against
    the paper's k3 in the loss, at the same betas, all else equal: the reward gap to the
    ceiling and the KL efficiency at each beta (the gap alone favours whichever spent more KL
    where the ceiling is flat). Holds when the reward's is nearer by both at every beta; does
    not hold when farther by both at every beta; mixed otherwise."""
    rows = [(v, *(distance(res, m, v, key) for m in (GRPO_KL_REWARD, GRPO_JUDGE)
                  for key in ("gap", "efficiency"))) for v in GRPO_JUDGE.values]
    nearer = [mean(rg) < mean(lg) and mean(re) > mean(le) for _, rg, re, lg, le in rows]
    farther = [mean(rg) > mean(lg) and mean(re) < mean(le) for _, rg, re, lg, le in rows]
    return Claim("Where the KL goes decides where GRPO lands: in the reward, nearer the "
                 "ceiling than in the loss", f"{OWN} (Tang and Munos 2025: k3 in the loss "
                 "follows KL(pi_ref || pi))", f"{command(GRPO_KL_REWARD, 'B')} against "
                 f"{command(GRPO_JUDGE, 'B')}, B = {', '.join(GRPO_JUDGE.values)}",
                 "; ".join(f"beta {v}: gap {ms(rg)} and KL efficiency {ms(re, '.0%')} in the "
                           f"reward, {ms(lg)} and {ms(le, '.0%')} in the loss"
                           for v, rg, re, lg, le in rows),
                 verdict(all(nearer), all(farther)),
                 [mean(x) for _, *cols in rows for x in cols])


def grpo_sharpens(res) -> Claim:
    """Holds when GRPO's sampled accuracy is above the SFT model's on every seed and closes
    more than half the gap to the SFT model's pass@8."""
    g, s, p8 = paired(res.column(GRPO.name, "0.04", "accuracy"), res.sft_column("accuracy"),
                      res.column(GRPO.name, "0.04", "sft_pass@8"))
    closed = (mean(g) - mean(s)) / max(1e-9, mean(p8) - mean(s)) if g else math.nan
    return Claim("GRPO with a verifiable reward sharpens pass@1 toward pass@G",
                 f"{FIRST} (rule-based rewards); Shao et al. 2024", command(GRPO, "0.04"),
                 f"sampled accuracy {ms(s)} (SFT) -> {ms(g)} (GRPO); the SFT model's pass@8 "
                 f"{ms(p8)}: {closed:.0%} of the gap closed", verdict(every(g, s) and closed > 0.5),
                 g + s + p8)


def win_rate_above_60(res) -> Claim:
    """Holds when the default DPO run's win rate over the SFT model is above 0.6 on every seed."""
    w = list(res.column(DPO.name, DV, "win_rate_vs_sft").values())
    return Claim("A DPO model should beat the SFT model's answer on over 60% of prompts",
                 f"{SECOND} (evaluation)", command(DPO, DV), f"win rate {ms(w)}",
                 verdict(bool(w) and min(w) > 0.6), w)


def implicit_reward_separates(res) -> Claim:
    """Holds when the implicit reward ranks the chosen answer first on over 90% of held-out
    pairs on every seed."""
    ira = list(res.column(DPO.name, DV, "implicit_reward_accuracy").values())
    return Claim("On held-out pairs the implicit reward separates chosen from rejected",
                 f"{SECOND} (evaluation)", command(DPO, DV), f"implicit reward ranks chosen first "
                 f"on {ms(ira)} of the pairs", verdict(bool(ira) and min(ira) > 0.9), ira)


CLAIMS = [higher_beta_lower_kl(PAPER), higher_beta_lower_kl(DPO), sft_learning_rate_hurts,
          small_set_overfits, long_chosen_teach_length, ipo_bounds_the_margin,
          beats_sft(KTO, "KTO works from binary labels (no pairs)",
                    f"{FIRST}; Ethayarajh et al. 2024"),
          beats_sft(ORPO, "ORPO works without an SFT stage", f"{SECOND}; Hong et al. 2024"),
          needs_sft_first, onpolicy_beats_offpolicy, lora_and_simpo_halve_memory, memory_ratios,
          time_ratios, dpo_faster_than_rlhf, ppo_less_stable, dpo_matches_ppo,
          dpo_reaches_its_optimum, online_dpo_beats_offline, online_ceiling_above_dpo,
          grpo_sharpens, win_rate_above_60, implicit_reward_separates,
          # this project's own findings
          simpo_stops_length, grpo_std_beats_rloo, kl_in_the_reward_lands_nearer]


def checks(res) -> list[Check]:
    return [c(res) for c in CHECKS]


def judge(res) -> list[Claim]:
    """Every claim against the results; one whose rule read a NaN, or nothing, is not judged."""
    claims = [c(res) for c in CLAIMS]
    for c in claims:
        if not c.numbers or not all(math.isfinite(x) for x in c.numbers):
            c.verdict = "not run"
    return claims
