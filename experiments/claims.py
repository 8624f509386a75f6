"""The claims of the two articles this project grew from, and this project's own findings,
each against compare's numbers; and the checks, statements true by construction, measured
to confirm the code.

The articles: "From DPO to GRPO: Direct Preference Optimization" (FIRST below: the method-
selection table and its resource bars) and "DPO: Direct Preference Optimization" (SECOND:
beta, learning rates, the debugging checklist, LoRA, the variants). OWN: a finding of this
project's, not an article's.

Every claim is judged seed by seed, and a verdict is one of four, by one rule (judge_seeds):
"holds (n of n seeds)" when it holds on every seed; "does not hold: no difference that
matters" or "does not hold: reversed" when every seed says that; "not settled" otherwise,
with each seed's outcome. Two kinds of claim:
- A Comparison, declared as data (COMPARISONS): one metric, two arms at knob values fixed
  before the run (or one arm against 0), a form (A above B, A below B, A not below B, A not
  above B) and delta, the smallest difference that matters. Where the claim is about one
  thing (a knob, a term, the data), the arms differ in that thing alone; where it is about
  two methods, its text names what differs besides. A seed's difference, turned so that the
  claimed direction is positive, is beyond that seed's delta, reversed beyond it, or within
  it. A seed's delta is the larger of the declared one and its noise: twice the standard
  error of its paired difference from evaluation noise alone (a bootstrap over the held-out
  prompts, experiments/measure.py's paired_noise, kept in compare.json's "noise"), and for
  a regret also the ceiling's own estimate error (ceiling_check: J* from M answers a prompt
  against 2M). Where the noise is larger than the declared delta, "within" cannot tell a
  difference that matters from none: the seed is "within the noise", and the claim is not
  settled. "A not below B" (matches or beats) holds where every seed is beyond or within.
- A per-seed threshold (THRESHOLDS, each a function): a number per seed against a bound the
  claim names (a win rate above 0.6, a memory ratio within 15 points of the article's).
A claim with a number missing on every seed (NaN, or no run) is "not run"; a seed without it
is named. A check has no verdict: it is true by the code's construction (DPO's loss at step
0, the models a script holds, the statistics of a group mean), and the measurement shows the
code does what it says.
"""

import math
from dataclasses import dataclass

from experiments.methods import EXTRAS, METHODS, command
from experiments.results import Results, mean, ms, ratio, resources

FIRST = '"From DPO to GRPO: Direct Preference Optimization"'
SECOND = '"DPO: Direct Preference Optimization"'
OWN = "this project's own finding"
DV = "0.1"                                           # the default DPO run's beta
PAPER, DPO, IPO, SIMPO, GRPO, PPO = (METHODS[k] for k in ("paper_dpo", "dpo", "ipo", "simpo",
                                                          "grpo", "ppo"))


@dataclass
class Claim:
    """A claim as the report shows it: judged, its measurement in words."""
    claim: str
    source: str       # the article, and the paper behind the claim where there is one
    runs: str         # the step each run adds after train_sft.py, or what was measured
    measured: str     # per seed, and what the rule read
    verdict: str

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


# ------------------------------------------------------------------ the rule

def judge_seeds(outcomes: dict[str, str | None], form: str = "above") -> str:
    """The verdict from each seed's outcome ("beyond", "within", "reversed"; None: no
    number). form "above"/"below" (a difference that matters, in the claimed direction) or
    "not below"/"not above" (no worse by more than delta: beyond and within both count). A
    seed without its number cannot be said to agree: the claim is then not settled, and the
    seed named; with no number at all it is "not run"."""
    if all(o is None for o in outcomes.values()):
        return "not run"
    said, n = set(outcomes.values()), f"{len(outcomes)} of {len(outcomes)} seeds"
    if said <= ({"beyond", "within"} if form.startswith("not ") else {"beyond"}):
        return f"holds ({n})"
    if said == {"within"}:
        return f"does not hold: no difference that matters ({n})"
    if said == {"reversed"}:
        return f"does not hold: reversed ({n})"
    return "not settled (" + ", ".join(f"seed {s}: {o or 'no number'}" for s, o in sorted(
        outcomes.items(), key=lambda kv: int(kv[0]))) + ")"


def outcome(difference: float, delta: float, declared: float, regret: bool = False) -> str | None:
    """A seed's difference, positive in the claimed direction, against the seed's delta:
    "beyond", "reversed" (beyond, the other way), "within" (a delta the declared one), or
    "within the noise" (the noise widened delta past the declared one). regret: the
    difference is minus a run's regret against 0, and a regret below -delta is no outcome of
    the run's: the ceiling's estimate (64 answers a prompt) fell short of a policy."""
    if not math.isfinite(difference):
        return None
    if regret and difference > delta:
        return "regret below -delta: the ceiling's estimate, not the run"
    if abs(difference) > delta:
        return "beyond" if difference > 0 else "reversed"
    return "within" if delta <= declared else f"within the noise (delta {delta:.3f})"


@dataclass(frozen=True)
class Comparison:
    """A comparison claim, as data. An arm is (method or extra run, knob value), ("sft", "")
    for the seed's SFT model; b None compares a with 0."""
    name: str              # its key in compare.json's "noise"
    claim: str
    source: str
    metric: str            # METRICS' keys: reward, correct, length, kl, gap, regret, drawdown
    a: tuple[str, str]
    b: tuple[str, str] | None
    form: str              # "above", "below", "not below" or "not above": a against b
    delta: float           # the smallest difference that matters, in the metric's units

    @property
    def sign(self) -> int:
        """+1 when the claim says a is higher (above, not below), -1 when lower."""
        return 1 if self.form in ("above", "not below") else -1


# what each metric is, per run: a mean over its held-out answers (eval numbers), or read off
# the seed's ceiling (measure.py's distances), or off its --eval_every path
METRICS = {"reward": "reward_mean", "correct": "accuracy", "length": "mean_length",
           "kl": "kl_to_ref", "gap": "gap", "regret": "regret", "drawdown": "drawdown"}
UNITS = {"reward": "", "correct": "", "length": " (tokens)", "kl": " (nats)", "gap": "",
         "regret": "", "drawdown": ""}


def arm_value(res: Results, arm, metric: str, seed: str) -> float:
    """One arm's number on one seed (NaN where there is none). The SFT model: its eval's
    means, a KL of 0, no distance from the ceiling."""
    if arm is None:
        return 0.0
    method, knob = arm
    if method == "sft":
        if metric == "kl":
            return 0.0
        return res.sft.get(seed, {}).get(METRICS[metric], math.nan) \
            if metric in ("reward", "correct", "length") else math.nan
    if metric in ("gap", "regret"):
        return res.distance.get(seed, {}).get(method, {}).get(knob, {}).get(metric, math.nan)
    run = res.runs_of(method, knob).get(seed)
    if run is None:
        return math.nan
    if metric == "drawdown":
        return drawdown([p["reward"] for p in run.path])
    return run.get(METRICS[metric])


def drawdown(rewards: list[float]) -> float:
    """The largest fall of the true reward along a path from its best point so far (0 for a
    path that never falls; NaN without a path)."""
    if len(rewards) < 2:
        return math.nan
    best, fall = rewards[0], 0.0
    for r in rewards:
        best, fall = max(best, r), max(fall, best - r)
    return fall


def arms_text(c: Comparison) -> str:
    def one(arm):
        method, knob = arm
        if method == "sft":
            return "the SFT model"
        if method in METHODS:
            return command(METHODS[method], knob)
        return EXTRAS[method][-1]
    return one(c.a) + ("" if c.b is None else " against " + one(c.b))


def noise_of(res: Results, c: Comparison, seed: str) -> float:
    """The seed's noise: twice the standard error of its paired difference from evaluation
    noise, plus for a regret the ceiling's estimate error (NaN where not measured)."""
    noise = 2 * res.noise.get(c.name, {}).get(seed, math.nan)
    return noise + res.ceiling_check.get("max_value_change", math.nan) \
        if c.metric == "regret" else noise


def judge_comparison(res: Results, c: Comparison) -> Claim:
    seeds = sorted(res.sft, key=int)
    noise = {s: noise_of(res, c, s) for s in seeds}
    delta = {s: max(c.delta, n) if math.isfinite(n) else c.delta for s, n in noise.items()}
    diffs = {s: c.sign * (arm_value(res, c.a, c.metric, s) - arm_value(res, c.b, c.metric, s))
             for s in seeds}
    a = [arm_value(res, c.a, c.metric, s) for s in seeds]
    b = [arm_value(res, c.b, c.metric, s) for s in seeds]
    word = f"a {c.form} {'0' if c.b is None else 'b'}"
    measured = (f"{c.metric}{UNITS[c.metric]}: a {ms(a)}" + ("" if c.b is None else
                                                           f", b {ms(b)}") +
                f"; per seed ({word}, positive as claimed) " +
                ", ".join(f"{s}: {d:+.3f}" for s, d in diffs.items()) +
                f"; delta declared {c.delta:g}, per seed " +
                ", ".join(f"{delta[s]:.3f}" for s in seeds) +
                (" (2 SE of the evaluation noise" + (" + the ceiling's estimate error"
                                                      if c.metric == "regret" else "") + ")"
                 if any(map(math.isfinite, noise.values())) else " (noise not measured)"))
    if c.metric == "regret":                 # a KL below 0 is an estimate's error: no regret
        below = {s: kl for s in seeds if (kl := arm_value(res, c.a, "kl", s)) < 0}
        measured += "".join(f"; seed {s}: KL {kl:.3f} < 0, not fed to the regret"
                            for s, kl in below.items())
        measured += "; reversed: a regret above delta"
    return Claim(c.claim, c.source, arms_text(c), measured, judge_seeds(
        {s: outcome(d, delta[s], c.delta, regret=c.metric == "regret" and c.b is None)
         for s, d in diffs.items()}, c.form))


# ------------------------------------------------------------------ the checks

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
    GROUP_SIZES = sorted(map(int, next(iter(gb.values()), {})))      # the G measured
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


# ------------------------------------------------------------------ the comparisons

REWARD_DELTA = 0.02      # of the true reward (1 right and well formed): a difference a
                         # reader would act on
KL_DELTA = 0.2           # nats
LENGTH_DELTA = 1.0       # tokens
SFT = ("sft", "")
COMPARISONS = [
    Comparison("paper_beta_kl", "Higher beta keeps the policy closer to the reference (the "
               "paper's DPO)", f"{SECOND} (beta); {FIRST}", "kl", ("paper_dpo", "1.0"),
               ("paper_dpo", "0.1"), "below", KL_DELTA),
    Comparison("dpo_beta_kl", "Higher beta keeps the policy closer to the reference (DPO + "
               "NLL)", f"{SECOND} (beta); {FIRST}", "kl", ("dpo", "0.3"), ("dpo", "0.03"),
               "below", KL_DELTA),
    Comparison("sft_lr_hurts", "At SFT's learning rate (1e-3) DPO ends worse than the SFT "
               "model", SECOND, "reward", ("paper_dpo_sft_lr", ""), SFT, "below", REWARD_DELTA),
    Comparison("low_lr_helps", "At 1/33 of SFT's learning rate (3e-5, in the article's "
               "10-50x) DPO ends better than the SFT model", SECOND, "reward",
               ("paper_dpo_low_lr", ""), SFT, "above", REWARD_DELTA),
    Comparison("small_set_hurts", "Many epochs on a small pair set: quality falls",
               SECOND, "reward", ("dpo_small_set", ""), ("dpo", DV), "below", REWARD_DELTA),
    Comparison("long_teaches_length", "Chosen answers much longer than rejected teach length",
               f"{SECOND} (debugging checklist)", "length", ("dpo_long_judge", ""),
               ("dpo", DV), "above", LENGTH_DELTA),
    Comparison("simpo_resists_length", "A length-biased labeller does not make SimPO's answers "
               "longer by a length that matters (where it makes DPO's: the claim above)",
               f"{OWN} (SimPO: Meng et al. 2024)", "length",
               ("simpo_long_judge", ""), ("simpo", "2.0"), "not above", LENGTH_DELTA),
    Comparison("kto_beats_sft", "KTO works from binary labels (no pairs)",
               f"{FIRST}; Ethayarajh et al. 2024", "reward", ("kto", DV), SFT, "above",
               REWARD_DELTA),
    Comparison("orpo_beats_sft", "ORPO works without an SFT stage", f"{SECOND}; Hong et al. "
               "2024", "reward", ("orpo", DV), SFT, "above", REWARD_DELTA),
    Comparison("needs_sft_first", "DPO started from a model that was never SFT'd trains "
               "poorly (the same written pairs)", f"{SECOND} (common mistakes)", "reward",
               ("dpo_from_pretrained", ""), ("dpo_offpolicy", ""), "below", REWARD_DELTA),
    Comparison("onpolicy_beats_offpolicy", "On-policy pairs (the SFT model's own samples, "
               "2000 prompts) beat off-policy pairs (two personas' written answers, 20000 "
               "prompts; both labelled by the true reward)",
               f"{FIRST} (offline distribution shift)", "reward",
               ("dpo", DV), ("dpo_offpolicy", ""), "above", REWARD_DELTA),
    # stability: a per-seed measure along each run's path (--eval_every), not a spread over
    # seeds; path points are single-sample means over the held-out prompts (about 0.014 each
    # on 256), so a fall between two of them under 0.05 is noise
    Comparison("ppo_less_stable", "PPO is less stable than DPO: its true reward falls further "
               "from its best along the run", f"{FIRST}; {SECOND}", "drawdown", ("ppo", "0.04"),
               ("dpo", DV), "above", 0.05),
    Comparison("dpo_matches_ppo", "DPO matches or beats PPO on the reward-vs-KL frontier "
               "(reward gap to the ceiling at the run's KL, each at its default knob)",
               f"{SECOND}; Rafailov et al. 2023, Fig. 2", "gap", ("dpo", DV), ("ppo", "0.04"),
               "not above", REWARD_DELTA),
    *[Comparison(f"dpo_reaches_its_optimum_{v}", f"DPO finds the policy its derivation "
                 f"promises, pi* ∝ pi_ref exp(r / (T beta)) (beta {v}): objective regret "
                 "within delta of 0", f"{SECOND}; {FIRST}; Rafailov et al. 2023, Eq. 4",
                 "regret", ("paper_dpo", v), None, "not above", REWARD_DELTA)
      for v in PAPER.values],
    Comparison("online_dpo_beats_offline", "Online (iterative) DPO beats offline DPO: no "
               "offline distribution shift (the same beta, steps and prompts)",
               f"{FIRST} (DPO's issues: offline distribution shift)", "reward",
               ("iterative_dpo", DV), ("dpo", DV), "above", REWARD_DELTA),
    Comparison("online_above_dpo", "An online method ends above DPO with the same reward on "
               "both sides: GRPO (judge reward) and DPO + NLL, each at its default knob (the "
               "article: a higher performance ceiling)",
               f"{FIRST} (method selection: performance ceiling)", "reward",
               ("grpo_judge", "0.04"), ("dpo", DV), "above", REWARD_DELTA),
    Comparison("grpo_sharpens", "GRPO with a verifiable reward raises pass@1 (sampled "
               "accuracy)", f"{FIRST} (rule-based rewards); Shao et al. 2024", "correct",
               ("grpo", "0.04"), SFT, "above", REWARD_DELTA),
    Comparison("reward_model_costs_ppo", "PPO on its reward model lands farther from the "
               "ceiling than PPO on the true reward (the reward model, and the critic's start, "
               "differ)", OWN, "gap", ("ppo", "0.04"), ("ppo_judge", "0.04"), "above",
               REWARD_DELTA),
    Comparison("grpo_beats_rloo", "GRPO's advantage and loss land nearer the ceiling than "
               "RLOO's, both with the KL in the reward at beta 0.04 (four things differ: the "
               "group std, the group mean against leave-one-out, per-token against whole-answer "
               "ratios, truncated answers out of the loss or in)",
               f"{OWN} (GRPO: Shao et al. 2024; RLOO: Ahmadian et al. 2024)", "gap",
               ("grpo_kl_reward", "0.04"), ("rloo", "0.04"), "below", REWARD_DELTA),
    # GRPO's leash, a 2 x 2 at beta 0.04: each finding changes one thing
    Comparison("std_scaling_leash_loss", "GRPO's std scaling lengthens its leash (KL in the "
               "loss)", OWN, "kl", ("grpo_judge", "0.04"), ("grpo_judge_unscaled", "0.04"),
               "above", KL_DELTA),
    Comparison("std_scaling_leash_reward", "GRPO's std scaling lengthens its leash (KL in the "
               "reward)", OWN, "kl", ("grpo_kl_reward", "0.04"),
               ("grpo_kl_reward_unscaled", "0.04"), "above", KL_DELTA),
    Comparison("placement_leash_scaled", "The KL in the loss (k3) gives a longer leash than in "
               "the reward (with std scaling)", f"{OWN} (Tang and Munos 2025)", "kl",
               ("grpo_judge", "0.04"), ("grpo_kl_reward", "0.04"), "above", KL_DELTA),
    Comparison("placement_leash_unscaled", "The KL in the loss (k3) gives a longer leash than "
               "in the reward (no std scaling; in the loss the group mean also shrinks the "
               "reward's pull by (G-1)/G, beta x 8/7)", f"{OWN} (Tang and Munos 2025)", "kl",
               ("grpo_judge_unscaled", "0.04"), ("grpo_kl_reward_unscaled", "0.04"), "above",
               KL_DELTA),
]


# ------------------------------------------------------------------ the per-seed thresholds

def threshold(res, claim, source, runs, values: dict[str, float], holds, fmt=".3f") -> Claim:
    """A claim judged per seed: holds(value) on each seed's number."""
    outcomes = {s: None if not math.isfinite(v) else "beyond" if holds(v) else "reversed"
                for s, v in values.items()}
    verdict = judge_seeds(outcomes).replace("does not hold: reversed", "does not hold") \
        .replace("beyond", "meets the bound").replace("reversed", "fails it")
    return Claim(claim, source, runs, "per seed " + ", ".join(
        f"{s}: {v:{fmt}}" for s, v in sorted(values.items(), key=lambda kv: int(kv[0]))),
        verdict)


def small_set_warning_sign(res) -> Claim:
    """The warning sign of the small pair set: its last margin above 10 with the DPO part of
    the loss below 0.1 (the sign's size: the margin, where the loss is below 0.1)."""
    margin, loss = (logged(res, "dpo_small_set", "", "last", k)
                    for k in ("rewards/margins", "dpo_loss"))
    values = {s: math.nan if not math.isfinite(loss.get(s, math.nan)) else
              margin[s] if loss[s] < 0.1 else 0.0 for s in margin}
    return threshold(res, "Many epochs on a small pair set show the sign: margin > 10, loss "
                     "near 0", SECOND, EXTRAS["dpo_small_set"][-1] + " (about 110 pairs, 150 "
                     "steps of 32: about 40 epochs): the last logged margin, where the DPO "
                     "loss is below 0.1 (else 0)", values, lambda v: v > 10, ".2f")


def ipo_bounds_the_margin(res) -> Claim:
    """IPO regresses the margin to tau x 1/(2 tau) = 0.5: bounded means its last margin is
    below 1.0 (twice the target)."""
    return threshold(res, "IPO keeps the margin bounded (below twice its target 0.5)",
                     f"{FIRST}; Azar et al. 2023", command(IPO, "0.5") + ": rewards/margins "
                     "over the last 10 logged steps",
                     logged(res, IPO.name, "0.5", "last", "rewards/margins"), lambda v: v < 1.0)


def dpo_margin_grows(res) -> Claim:
    """DPO's margin still grows: its last 10 logged steps' mean above its middle 10's."""
    mid, last = (logged(res, DPO.name, DV, w, "rewards/margins") for w in ("middle", "last"))
    return threshold(res, "DPO's margin keeps growing (where IPO's is bounded)",
                     f"{FIRST}; Azar et al. 2023", command(DPO, DV) + ": rewards/margins, the "
                     "last 10 logged steps less the middle 10", {s: last[s] - mid[s] for s in
                                                                 last}, lambda v: v > 0)


def grpo_closes_half(res) -> Claim:
    """GRPO closes more than half the gap from the SFT model's sampled accuracy to its
    pass@8 (what 8 samples would have found)."""
    g, p8 = (res.column(GRPO.name, "0.04", k) for k in ("accuracy", "sft_pass@8"))
    s = res.sft_column("accuracy")
    closed = {k: (g[k] - s[k]) / (p8[k] - s[k]) if p8[k] > s[k] else math.nan   # no gap
              for k in g if k in s}
    return threshold(res, "GRPO's pass@1 closes over half the gap to the SFT model's pass@8",
                     f"{FIRST} (rule-based rewards); Shao et al. 2024", command(GRPO, "0.04"),
                     closed, lambda v: v > 0.5, ".0%")


def win_rate_above_60(res) -> Claim:
    return threshold(res, "A DPO model should beat the SFT model's answer on over 60% of "
                     "prompts", f"{SECOND} (evaluation)", command(DPO, DV),
                     res.column(DPO.name, DV, "win_rate_vs_sft"), lambda v: v > 0.6)


def implicit_reward_separates(res) -> Claim:
    return threshold(res, "On held-out pairs the implicit reward ranks chosen first on over "
                     "90%", f"{SECOND} (evaluation)", command(DPO, DV),
                     res.column(DPO.name, DV, "implicit_reward_accuracy"), lambda v: v > 0.9)


MEMORY_RUNS = "a 25M-parameter model (8 x 512), a few steps of each script, one batch shape " \
    "(experiments/methods.py, MEMORY): the peak resident memory each process added to its start"


def memory_share(res, name: str, of: str) -> dict[str, float]:
    """{seed: name's memory as a share of `of`'s} (NaN where `of` added nothing)."""
    a, b = res.memory.get(name, {}), res.memory.get(of, {})
    return {s: ratio(a[s], b[s]) for s in a if s in b}


def memory_claim(name, of, text, source, holds):
    def claim(res) -> Claim:
        return threshold(res, text, source, MEMORY_RUNS, memory_share(res, name, of), holds,
                         ".0%")
    claim.__name__ = f"memory({name}, {of})"
    return claim


def time_share(res, m) -> dict[str, float]:
    """{seed: m's training time as a share of RLHF's (reward model + PPO)}, middle knobs."""
    used = resources(res, (PPO, m))
    seeds = [s for s, r in res.runs_of(m.name, used[m.name]["value"]).items()]
    rlhf = dict(zip(res.runs_of(PPO.name, used[PPO.name]["value"]), used[PPO.name]["train_seconds"]))
    own = dict(zip(seeds, used[m.name]["train_seconds"]))
    return {s: ratio(own[s], rlhf[s]) for s in own if s in rlhf}


def time_claim(m, text, source, holds):
    def claim(res) -> Claim:
        return threshold(res, text, source, "the resources table (middle knob values), per "
                         "seed", time_share(res, m), holds, ".0%")
    claim.__name__ = f"time({m.name})"
    return claim


THRESHOLDS = [
    small_set_warning_sign, ipo_bounds_the_margin, dpo_margin_grows, grpo_closes_half,
    win_rate_above_60, implicit_reward_separates,
    memory_claim("LoRA-DPO", "DPO", "LoRA (adapters-off reference) halves DPO's memory "
                 "(55% or less)", f"{SECOND} (LoRA)", lambda v: v <= 0.55),
    memory_claim("SimPO", "DPO", "SimPO (no reference) halves DPO's memory (55% or less)",
                 f"{SECOND} (SimPO); Meng et al. 2024", lambda v: v <= 0.55),
    memory_claim("DPO", "RLHF", "DPO's training memory is 40% of RLHF's (within 15 points)",
                 f"{FIRST} (resource bars)", lambda v: abs(v - 0.40) <= 0.15),
    memory_claim("GRPO", "RLHF", "GRPO's training memory is 60% of RLHF's (within 15 points)",
                 f"{FIRST} (resource bars)", lambda v: abs(v - 0.60) <= 0.15),
    time_claim(DPO, "DPO's training time is 30% of RLHF's (within 15 points)",
               f"{FIRST} (resource bars)", lambda v: abs(v - 0.30) <= 0.15),
    time_claim(GRPO, "GRPO's training time is 60% of RLHF's (within 15 points)",
               f"{FIRST} (resource bars)", lambda v: abs(v - 0.60) <= 0.15),
    time_claim(DPO, "DPO trains 3-10x faster than RLHF (10% to 33% of its time)", SECOND,
               lambda v: 0.1 <= v <= 1 / 3),
]


def checks(res) -> list[Check]:
    return [c(res) for c in CHECKS]


def judge(res, comparisons_only: bool = False) -> list[Claim]:
    """Every claim against the results: the comparisons, then (unless comparisons_only) the
    thresholds."""
    return [judge_comparison(res, c) for c in COMPARISONS] + \
        ([] if comparisons_only else [t(res) for t in THRESHOLDS])
