"""The claims of the two articles this project grew from, each against compare's numbers.

The articles: "From DPO to GRPO: Direct Preference Optimization" (FIRST below: the method-
selection table and its resource bars) and "DPO: Direct Preference Optimization" (SECOND:
beta, learning rates, the debugging checklist, LoRA, the variants). Each claim is one
function of compare's results that returns a Claim: what is claimed and where, the runs that
test it, what was measured (mean ± std over seeds), and a verdict computed from those numbers
by the rule its docstring states. A claim whose numbers are missing is "not run".
"""

import math
from typing import NamedTuple

from experiments.methods import (DPO, EXTRAS, GRPO, IPO, KTO, LORA, ORPO, PAPER, PPO, SIMPO,
                                 command)
from experiments.measure import GROUP_SIZES
from experiments.results import (by_seed, every, mean, middle, ms, of, paired, resources,
                                 sft_by_seed, std, verdict)
from experiments.sweep import summarize

FIRST = '"From DPO to GRPO: Direct Preference Optimization"'
SECOND = '"DPO: Direct Preference Optimization"'
DV = "0.1"                                           # the default DPO run's beta


class Claim(NamedTuple):
    claim: str
    source: str       # the article, and the paper behind the claim where there is one
    runs: str         # the step each run adds after train_sft.py, or what was measured
    measured: str     # mean ± std over seeds
    verdict: str


def loss_starts_at_ln2(result) -> Claim:
    """Holds when every run of the paper's loss logged a loss within 1e-3 of ln 2 at step 0
    (policy = reference, so the margin h is 0 and -log sigmoid(0) = ln 2)."""
    first = [x for v in PAPER.values for x in by_seed(result, PAPER.name, v,
                                                      "log:first:loss").values()]
    return Claim("DPO's loss is ln 2 at the start (policy = reference)",
                 f"{SECOND}; Rafailov et al. 2023, Eq. 7", command(PAPER, "B") +
                 ", the loss logged at step 0",
                 f"{ms(first, '.4f')} over {len(first)} runs (ln 2 = {math.log(2):.4f})",
                 verdict(bool(first) and all(abs(x - math.log(2)) < 1e-3 for x in first)))


def higher_beta_lower_kl(m):
    def claim(result) -> Claim:
        """Holds when on every seed the KL to the SFT model falls at each step up in beta."""
        kls = [of(result, m, v, "kl_to_ref") for v in m.values]
        seqs = list(zip(*paired(*kls))) if all(kls) else []
        return Claim(f"Higher beta keeps the policy closer to the reference ({m.name})",
                     f"{SECOND} (beta); {FIRST}", command(m, "B") + f", B = {', '.join(m.values)}",
                     "KL " + "; ".join(f"{ms(k.values(), '.2f')} at {v}"
                                       for v, k in zip(m.values, kls)),
                     verdict(bool(seqs) and all(all(a > b for a, b in zip(s, s[1:]))
                                                for s in seqs)))
    claim.__name__ = f"higher_beta_lower_kl({m.name})"
    return claim


def sft_learning_rate_hurts(result) -> Claim:
    """Holds when DPO at SFT's learning rate (1e-3) ends below the SFT model on every seed;
    does not hold when above it on every seed."""
    a, s, d = paired(by_seed(result, "dpo_sft_lr", "", "dpo/reward_mean"), sft_by_seed(result),
                     of(result, DPO, DV, "reward_mean"))
    return Claim("DPO needs a learning rate far below SFT's; at SFT's it ends worse than the "
                 "SFT model", SECOND, EXTRAS["dpo_sft_lr"] + " (SFT's; the default is 2e-4)",
                 f"true reward {ms(a)} at 1e-3 against {ms(s)} for the SFT model and {ms(d)} "
                 "at 2e-4", verdict(every(a, s, above=False), every(a, s)))


def small_set_overfits(result) -> Claim:
    """The warning sign (a last margin above 10 with the DPO part of the loss below 0.1) and
    the harm (true reward below the default run's on every seed): holds with both, partly
    with one, does not hold with neither."""
    r = lambda key: by_seed(result, "dpo_small_set", "", key)          # noqa: E731
    margin, loss, nll, small, full = paired(
        r("log:last:rewards/margins"), r("log:last:loss"), r("log:last:nll_loss"),
        r("dpo/reward_mean"), of(result, DPO, DV, "reward_mean"))
    dpo_part = [x - y for x, y in zip(loss, nll)]
    sign, harm = bool(margin) and mean(margin) > 10 and mean(dpo_part) < 0.1, \
        every(small, full, above=False)
    return Claim("Many epochs on a small pair set overfit: margin > 10, loss near 0, quality "
                 "falls", SECOND, EXTRAS["dpo_small_set"] + " (about 110 pairs, 150 steps of "
                 "32: about 40 epochs) against the default 2000 prompts",
                 f"last margin {ms(margin, '.2f')}, DPO loss {ms(dpo_part)}; true reward "
                 f"{ms(small)} against {ms(full)}",
                 "holds" if sign and harm else "partly" if sign or harm else "does not hold")


def long_chosen_teach_length(result) -> Claim:
    """Holds when, on every seed, DPO with the length-biased labeller answers longer than with
    the true one."""
    dl, d0 = paired(by_seed(result, "dpo_long_judge", "", "dpo/mean_length"),
                    of(result, DPO, DV, "mean_length"))
    return Claim("Chosen answers much longer than rejected teach length",
                 f"{SECOND} (debugging checklist)", EXTRAS["dpo_long_judge"] +
                 " (a labeller that adds 0.03 a word)",
                 f"DPO's answers {ms(dl, '.1f')} tokens against {ms(d0, '.1f')} with the true "
                 "labeller", verdict(every(dl, d0)))


def simpo_stops_length(result) -> Claim:
    """Holds when SimPO's length gain from the biased labeller is under half of DPO's."""
    dl, d0, sl, s0 = paired(by_seed(result, "dpo_long_judge", "", "dpo/mean_length"),
                            of(result, DPO, DV, "mean_length"),
                            by_seed(result, "simpo_long_judge", "", "simpo/mean_length"),
                            of(result, SIMPO, "2.0", "mean_length"))
    gain_d, gain_s = mean(dl) - mean(d0), mean(sl) - mean(s0)
    return Claim("SimPO's length normalisation prevents it", f"{SECOND}; Meng et al. 2024",
                 EXTRAS["simpo_long_judge"],
                 f"SimPO's answers {ms(sl, '.1f')} tokens against {ms(s0, '.1f')} with the true "
                 f"labeller: {gain_s:+.1f} against DPO's {gain_d:+.1f}",
                 verdict(bool(sl) and gain_s < gain_d / 2, bool(sl) and gain_s >= gain_d / 2))


def ipo_bounds_the_margin(result) -> Claim:
    """IPO's last margin below 1.0 on every seed (twice its target) is bounded; holds when
    DPO's also grew from the middle to the end on every seed, partly when only on the mean."""
    r = lambda m, v, when: of(result, m, v, f"log:{when}:rewards/margins").values()  # noqa: E731
    im, il, dm, dl = (list(r(m, v, w)) for m, v, w in ((IPO, "0.5", "middle"),
                      (IPO, "0.5", "last"), (DPO, DV, "middle"), (DPO, DV, "last")))
    bounded = bool(il) and all(x < 1.0 for x in il)
    return Claim("IPO keeps the margin bounded where DPO's grows", f"{FIRST}; Azar et al. 2023",
                 command(IPO, "0.5") + " and " + command(DPO, DV) + ": rewards/margins over the "
                 "middle and last 10 logged steps",
                 f"IPO {ms(im)} -> {ms(il)} (its target tau x 1/(2 tau) = 0.5); DPO {ms(dm)} -> "
                 f"{ms(dl)}", "holds" if bounded and every(dl, dm) else "partly: IPO's is "
                 "bounded, DPO's grew on the mean, not on every seed" if bounded and
                 mean(dl) > mean(dm) else "does not hold")


def beats_sft(m, text, source):
    def claim(result) -> Claim:
        """Holds when the method's true reward is above the SFT model's on every seed."""
        x, s, d = paired(of(result, m, "0.1", "reward_mean"), sft_by_seed(result),
                         of(result, DPO, DV, "reward_mean"))
        return Claim(text, source, command(m, "0.1"), f"true reward {ms(x)} against {ms(s)} for "
                     f"the SFT model ({ms(d)} for DPO)", verdict(every(x, s)))
    claim.__name__ = f"beats_sft({m.name})"
    return claim


def needs_sft_first(result) -> Claim:
    """Holds when DPO from the pretrained model ends below DPO from the SFT model on the same
    written pairs on every seed; does not hold when above on every seed."""
    pre, off = paired(by_seed(result, "dpo_from_pretrained", "", "dpo/reward_mean"),
                      by_seed(result, "dpo_offpolicy", "", "dpo/reward_mean"))
    return Claim("DPO started from a model that was never SFT'd trains poorly",
                 f"{SECOND} (common mistakes)", EXTRAS["dpo_from_pretrained"],
                 f"true reward {ms(pre)} against {ms(off)} from the SFT model on the same pairs",
                 verdict(every(pre, off, above=False), every(pre, off)))


def onpolicy_beats_offpolicy(result) -> Claim:
    """Holds when the SFT model's own judged samples give a higher true reward than the
    persona generator's written pairs on every seed; does not hold when lower on every seed."""
    on, off, won, woff = paired(
        of(result, DPO, DV, "reward_mean"), by_seed(result, "dpo_offpolicy", "", "dpo/reward_mean"),
        of(result, DPO, DV, "win_rate_vs_sft"),
        by_seed(result, "dpo_offpolicy", "", "dpo/win_rate_vs_sft"))
    return Claim("On-policy pairs (the SFT model's own samples) beat off-policy pairs",
                 f"{FIRST} (offline distribution shift)",
                 f"{command(DPO, DV)} against {EXTRAS['dpo_offpolicy']}",
                 f"true reward {ms(on)} against {ms(off)}; win rate {ms(won)} against {ms(woff)}",
                 verdict(every(on, off), every(off, on)))


def lora_and_simpo_halve_memory(result) -> Claim:
    """Not testable from these runs: at 0.4M parameters a process's memory is the runtime's,
    not the weights'."""
    res = resources(result)
    peak = {m: mean(res[m.name]["peak_mb"]) for m in (DPO, LORA, SIMPO)}
    return Claim("LoRA (adapters-off reference) and SimPO (no reference) halve DPO's memory",
                 f"{SECOND} (LoRA, SimPO); Meng et al. 2024", command(LORA, "0.1") + ", " +
                 command(SIMPO, "2.0"), f"peak process memory on the CPU {peak[LORA]:.0f} and "
                 f"{peak[SIMPO]:.0f} MiB against DPO's {peak[DPO]:.0f}",
                 "not testable here: needs the peak memory of a model large enough that its "
                 "weights and optimizer state, not the runtime, fill the process")


def models_in_memory(result) -> Claim:
    """Holds when the scripts held 4 (RLHF), 2 (DPO) and 2 (GRPO) distinct sets of weights as
    training started, on every seed (measured: models_in_memory in the first logged step)."""
    res = resources(result)
    held = {m: res[m.name]["models"] for m in (PPO, DPO, GRPO)}
    said = {PPO: 4, DPO: 2, GRPO: 2}
    return Claim("RLHF holds 4 models, DPO and GRPO 2", FIRST,
                 f"{command(PPO, '0.05')}, {command(DPO, DV)}, {command(GRPO, '0.04')}: "
                 "models_in_memory, logged at step 0", ", ".join(
                     f"{m.name}: {ms(held[m], '.1f')}" for m in held),
                 verdict(all(held[m] and all(x == said[m] for x in held[m]) for m in held)))


def memory_ratios(result) -> Claim:
    """Not testable from these runs (see lora_and_simpo_halve_memory)."""
    res = resources(result)
    pct = [mean(res[m.name]["peak_mb"]) / mean(res[PPO.name]["peak_mb"]) * 100
           for m in (DPO, GRPO)]
    return Claim("Training memory: RLHF 100%, DPO 40%, GRPO 60%", f"{FIRST} (resource bars)",
                 "the resources table (middle knob values)",
                 f"peak process memory on the CPU: DPO {pct[0]:.0f}%, GRPO {pct[1]:.0f}% of "
                 "RLHF's", "not testable here: needs the peak memory of a model large enough "
                 "that its weights and optimizer state, not the runtime, fill the process")


def time_ratios(result) -> Claim:
    """Holds when DPO's and GRPO's training times are within 15 points of 30% and 60% of
    RLHF's; "the order holds" when only DPO < GRPO < RLHF does."""
    res = resources(result)
    pct = [mean(res[m.name]["train_seconds"]) / mean(res[PPO.name]["train_seconds"]) * 100
           for m in (DPO, GRPO)]
    close = all(abs(g - s) <= 15 for g, s in zip(pct, (30, 60)))
    ordered = pct[0] < pct[1] < 100
    return Claim("Training time: RLHF 100%, DPO 30%, GRPO 60%", f"{FIRST} (resource bars)",
                 "the resources table (middle knob values)",
                 f"DPO {pct[0]:.0f}%, GRPO {pct[1]:.0f}% of RLHF's",
                 "holds" if close and ordered else "the order holds, the ratios do not"
                 if ordered else "does not hold")


def dpo_faster_than_rlhf(result) -> Claim:
    """Holds when RLHF's training time (reward model + PPO) is 3 to 10 times DPO's."""
    res = resources(result)
    ratio = mean(res[PPO.name]["train_seconds"]) / mean(res[DPO.name]["train_seconds"])
    return Claim("DPO trains 3-10x faster than RLHF", SECOND, "the resources table",
                 f"RLHF (reward model + PPO) took {ratio:.1f}x DPO's training time",
                 verdict(3 <= ratio <= 10))


def ppo_less_stable(result) -> Claim:
    """Holds when PPO's true reward varies more than DPO's both over seeds (at the middle knob)
    and over the knob (range of the means); does not hold when less on both."""
    spread = {}
    for m in (PPO, DPO):
        r = {v: list(of(result, m, v, "reward_mean").values()) for v in m.values}
        means = [mean(x) for x in r.values() if x]
        seeds = summarize(r[middle(result, m)]) if means else {"n": 0}
        spread[m] = (seeds["std"] if seeds["n"] > 1 else math.nan,
                     max(means) - min(means) if len(means) > 1 else math.nan)
    return Claim("PPO is less stable than DPO", f"{FIRST}; {SECOND}",
                 f"{command(PPO, 'K')}, K = {', '.join(PPO.values)}; {command(DPO, 'B')}, B = "
                 f"{', '.join(DPO.values)}", f"true reward std over seeds {spread[PPO][0]:.3f} "
                 f"(PPO) against {spread[DPO][0]:.3f} (DPO); range of means over the knob "
                 f"{spread[PPO][1]:.3f} against {spread[DPO][1]:.3f}",
                 verdict(all(p > d for p, d in zip(spread[PPO], spread[DPO])),
                         all(p < d for p, d in zip(spread[PPO], spread[DPO]))))


def dpo_matches_ppo(result) -> Claim:
    """Holds when, for every PPO point, DPO + NLL has a point at no more KL whose mean true
    reward is within one seed std of PPO's."""
    dpo_pts = [(mean(of(result, DPO, v, "kl_to_ref").values()),
                mean(of(result, DPO, v, "reward_mean").values())) for v in DPO.values]
    matched = []
    for v in PPO.values:
        kl, rw = of(result, PPO, v, "kl_to_ref").values(), of(result, PPO, v, "reward_mean").values()
        kl, sd, rw = mean(kl), std(rw), mean(rw)
        best = max((r for k, r in dpo_pts if k <= kl), default=None)
        matched.append((v, kl, rw, best, best is not None and best >= rw - sd))
    top_kl, top = max(dpo_pts, key=lambda t: t[1], default=(math.nan, math.nan))
    return Claim("DPO matches or beats PPO on the reward-vs-KL frontier",
                 f"{SECOND}; Rafailov et al. 2023, Fig. 2",
                 "the frontier: DPO + NLL's best true reward at a KL no larger than each PPO "
                 "point's", "; ".join(f"PPO {PPO.knob} {v}: {rw:.3f} at {kl:.2f} nats, DPO " +
                                      (f"{best:.3f}" if best is not None else "none that close")
                                      for v, kl, rw, best, _ in matched) +
                 f" (DPO's best anywhere: {top:.3f} at {top_kl:.2f} nats)",
                 verdict(bool(matched) and all(ok for *_, ok in matched)))


def group_size_lowers_variance(result) -> Claim:
    """Holds when the group-mean baseline's std falls at every step up in G and sampling G=16
    took at least 4x as long as G=2; partly when only the first does."""
    gb = result["group_baseline"]
    std_g, sec_g, zero_g = ([mean(g[str(G)][k] for g in gb.values()) for G in GROUP_SIZES]
                            for k in ("baseline_std", "sample_seconds", "frac_zero_std"))
    falls = all(a > b for a, b in zip(std_g, std_g[1:]))
    return Claim("A larger group G lowers the variance of GRPO's advantage, at a linear cost",
                 f"{FIRST}; Shao et al. 2024", "measured here: the SFT model's 64 answers to "
                 "each of 64 prompts, split into groups of G",
                 "std of the group-mean baseline " + ", ".join(
                     f"{s:.3f} (G = {G})" for s, G in zip(std_g, GROUP_SIZES)) +
                 "; groups with one reward for all (no gradient) " + ", ".join(
                     f"{z:.2f}" for z in zero_g) + "; seconds to sample G answers per prompt: "
                 f"x{sec_g[-1] / sec_g[0]:.1f} from G = {GROUP_SIZES[0]} to {GROUP_SIZES[-1]} "
                 f"(linear: x{GROUP_SIZES[-1] // GROUP_SIZES[0]})",
                 "holds" if falls and sec_g[-1] / sec_g[0] >= 4 else "partly" if falls
                 else "does not hold")


def grpo_sharpens(result) -> Claim:
    """Holds when GRPO's sampled accuracy is above the SFT model's on every seed and closes
    more than half the gap to the SFT model's pass@8."""
    g, s, p8 = paired(of(result, GRPO, "0.04", "accuracy"), sft_by_seed(result, "accuracy"),
                      of(result, GRPO, "0.04", "sft_pass@8"))
    closed = (mean(g) - mean(s)) / max(1e-9, mean(p8) - mean(s)) if g else math.nan
    return Claim("GRPO with a verifiable reward sharpens pass@1 toward pass@G",
                 f"{FIRST} (rule-based rewards); Shao et al. 2024", command(GRPO, "0.04"),
                 f"sampled accuracy {ms(s)} (SFT) -> {ms(g)} (GRPO); the SFT model's pass@8 "
                 f"{ms(p8)}: {closed:.0%} of the gap closed", verdict(every(g, s) and closed > 0.5))


def win_rate_above_60(result) -> Claim:
    """Holds when the default DPO run's win rate over the SFT model is above 0.6 on every seed."""
    w = list(of(result, DPO, DV, "win_rate_vs_sft").values())
    return Claim("A DPO model should beat the SFT model's answer on over 60% of prompts",
                 f"{SECOND} (evaluation)", command(DPO, DV), f"win rate {ms(w)}",
                 verdict(bool(w) and min(w) > 0.6))


def implicit_reward_separates(result) -> Claim:
    """Holds when the implicit reward ranks the chosen answer first on over 90% of held-out
    pairs on every seed."""
    ira = list(of(result, DPO, DV, "implicit_reward_accuracy").values())
    return Claim("On held-out pairs the implicit reward separates chosen from rejected",
                 f"{SECOND} (evaluation)", command(DPO, DV), f"implicit reward ranks chosen first "
                 f"on {ms(ira)} of the pairs", verdict(bool(ira) and min(ira) > 0.9))


CLAIMS = [loss_starts_at_ln2, higher_beta_lower_kl(PAPER), higher_beta_lower_kl(DPO),
          sft_learning_rate_hurts, small_set_overfits, long_chosen_teach_length,
          simpo_stops_length, ipo_bounds_the_margin,
          beats_sft(KTO, "KTO works from binary labels (no pairs)",
                    f"{FIRST}; Ethayarajh et al. 2024"),
          beats_sft(ORPO, "ORPO works without an SFT stage", f"{SECOND}; Hong et al. 2024"),
          needs_sft_first, onpolicy_beats_offpolicy, lora_and_simpo_halve_memory,
          models_in_memory, memory_ratios, time_ratios, dpo_faster_than_rlhf, ppo_less_stable,
          dpo_matches_ppo, group_size_lowers_variance, grpo_sharpens, win_rate_above_60,
          implicit_reward_separates]


def judge(result) -> list[Claim]:
    """Every claim against the results; one whose numbers are not all there is not judged."""
    claims = [c(result) for c in CLAIMS]
    return [c._replace(verdict="not run") if "n/a" in c.measured or "nan" in c.measured else c
            for c in claims]
