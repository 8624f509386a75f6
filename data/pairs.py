"""Preference data judged by the toy world's true reward: pairs for DPO and the reward model,
labelled answers for KTO.

The judge stands in for a human rater. It never sees a model: the scripts sample the answers
(evaluation.generate) and hand them in, so this file imports nothing from the model.
    pairs_from_samples   K answers per prompt -> (chosen, rejected): best against worst, or
                         with --label_temperature T > 0 two of them labelled by Bradley-Terry,
                         P(a beats b) = sigmoid((r_a - r_b) / T), as a noisy human would
    offpolicy_pairs      two personas' written answers (the generator's, not a model's)
    labelled_answers     KTO's rows from the same samples: desirable when the reward is high
Files follow TRL: pairs {"prompt", "chosen", "rejected"}, KTO rows {"prompt", "completion",
"label"}; read_labelled_answers also splits a pairs file into its two halves, as TRL does.
"""

import json
import math
import random

from data.batching import DataError, read_jsonl
from data.world import PERSONA_MIX, parse_prompt, respond, reward


def judge(prompt: str, answer: str, length_bonus: float = 0.0) -> float:
    """The labeller's score: the true reward, plus length_bonus per word (a labeller biased
    toward long answers, as the DPO checklist warns of; 0 by default)."""
    return reward(prompt, answer) + length_bonus * len(answer.split())


def label(rng: random.Random, prompt: str, a: str, b: str, *, label_temperature: float = 0.0,
          length_bonus: float = 0.0):
    """(chosen, rejected) from two answers, or None for a tie under deterministic labels."""
    ra, rb = (judge(prompt, r, length_bonus) for r in (a, b))
    if label_temperature > 0:
        a_wins = rng.random() < 1 / (1 + math.exp(-(ra - rb) / label_temperature))  # B-T
        return (a, b) if a_wins else (b, a)
    if ra == rb:
        return None
    return (a, b) if ra > rb else (b, a)


def pairs_from_samples(prompts: list[str], answers: list[str], *, seed: int,
                       label_temperature: float = 0.0, length_bonus: float = 0.0) -> list[dict]:
    """One pair per prompt from its K = len(answers) / len(prompts) sampled answers (answer
    i*K+k is the k-th to prompt i): best against worst, or two at random labelled by
    Bradley-Terry when label_temperature > 0. Prompts whose answers all tie give none."""
    K, rng, pairs = len(answers) // len(prompts), random.Random(seed), []
    for i, p in enumerate(prompts):
        group = sorted(answers[i * K:(i + 1) * K], key=lambda r: judge(p, r, length_bonus))
        a, b = (group[-1], group[0]) if label_temperature == 0 else rng.sample(group, 2)
        if a != b and (lab := label(rng, p, a, b, label_temperature=label_temperature,
                                    length_bonus=length_bonus)):
            pairs.append({"prompt": p, "chosen": lab[0], "rejected": lab[1]})
    return pairs


def offpolicy_pairs(prompts: list[str], *, seed: int, label_temperature: float = 0.0,
                    length_bonus: float = 0.0) -> list[dict]:
    """Two different personas answer each prompt (written by the generator, not a model)."""
    rng, pairs = random.Random(seed), []
    for p in prompts:
        task = parse_prompt(p)
        a, b = (respond(task, persona, rng) for persona in rng.sample(list(PERSONA_MIX), 2))
        if lab := label(rng, p, a, b, label_temperature=label_temperature,
                        length_bonus=length_bonus):
            pairs.append({"prompt": p, "chosen": lab[0], "rejected": lab[1]})
    return pairs


def labelled_answers(prompts: list[str], answers: list[str], threshold: float) -> list[dict]:
    """KTO's rows: every sampled answer (K per prompt, as pairs_from_samples takes them), with
    label True (desirable) when its true reward is at least threshold."""
    K = len(answers) // len(prompts)
    return [{"prompt": p, "completion": a, "label": reward(p, a) >= threshold}
            for i, p in enumerate(prompts) for a in answers[i * K:(i + 1) * K]]


def preferences(prompts: list[str], answers: list[str] | None, *, unpaired: bool,
                desirable_reward: float, seed: int, label_temperature: float = 0.0,
                length_bonus: float = 0.0) -> list[dict]:
    """The training data of a preference method: from sampled answers (K per prompt), pairs
    (pairs_from_samples) or, unpaired, KTO's labelled answers (labelled_answers); with answers
    None, two personas' written answers to each prompt (offpolicy_pairs; for KTO, split)."""
    labels = dict(seed=seed, label_temperature=label_temperature, length_bonus=length_bonus)
    if answers is None:
        pairs = offpolicy_pairs(prompts, **labels)
        return split_pairs(pairs) if unpaired else pairs
    if unpaired:
        return labelled_answers(prompts, answers, desirable_reward)
    return pairs_from_samples(prompts, answers, **labels)


def mismatched(rows: list[tuple]) -> list[tuple]:
    """(prompt, completion) rows with each completion under the next row's prompt: answers
    that belong to no prompt, for KTO's reference point (as TRL builds them)."""
    completions = [r[1] for r in rows]
    return [(r[0], c) for r, c in zip(rows, completions[-1:] + completions[:-1])]


def read_pairs(path) -> list[dict]:
    return read_jsonl(path, ("prompt", "chosen", "rejected"))


def read_preferences(path, unpaired: bool) -> list[dict]:
    """Pairs, or with unpaired KTO's labelled answers, from a JSONL file."""
    return read_labelled_answers(path) if unpaired else read_pairs(path)


def read_labelled_answers(path) -> list[dict]:
    """KTO's rows from a JSONL file of rows, or of pairs (split into their two halves)."""
    read_jsonl(path, ())                  # the file's own errors first (missing, not JSON)
    with open(path, encoding="utf-8-sig") as f:
        first = json.loads(next(line for line in f if line.strip()))
    if "chosen" not in first:
        return read_jsonl(path, ("prompt", "completion"), flags=("label",))
    return split_pairs(read_pairs(path))


def split_pairs(pairs: list[dict]) -> list[dict]:
    """KTO's rows from pairs, as TRL splits them: the chosen answer desirable, the rejected not."""
    return [{"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
            for r in pairs for k in ("chosen", "rejected")]


def imbalance(rows: list[dict], ratio: float, seed: int) -> list[dict]:
    """rows with desirable ones dropped at random until n_D <= ratio * n_U (0: all kept)."""
    desirable = [r for r in rows if r["label"]]
    undesirable = [r for r in rows if not r["label"]]
    if ratio <= 0 or len(desirable) <= ratio * len(undesirable):
        return rows
    keep = random.Random(seed).sample(desirable, max(1, int(ratio * len(undesirable))))
    return keep + undesirable


def kto_weights(labels: list[bool], desirable_weight: float | None,
                undesirable_weight: float) -> tuple[float, float]:
    """KTO's class weights (w_D, w_U) for rows with these labels: desirable_weight, or n_U / n_D
    when None, so that w_D n_D = w_U n_U. Warns, as TRL does, when w_D n_D / (w_U n_U) is
    outside [1, 4/3] (the range the KTO paper recommends)."""
    n_d = sum(labels)
    n_u = len(labels) - n_d
    if n_d == 0 or n_u == 0:
        raise ValueError(f"KTO needs desirable and undesirable rows; got {n_d} and {n_u}")
    w_d = desirable_weight if desirable_weight is not None else n_u / n_d
    ratio = w_d * n_d / (undesirable_weight * n_u)
    print(f"kto: {n_d} desirable and {n_u} undesirable rows, weights {w_d:.3g} and "
          f"{undesirable_weight:.3g}: w_D n_D / (w_U n_U) = {ratio:.2f}")
    if not 1 - 1e-9 <= ratio <= 4 / 3 + 1e-9:      # n_U / n_D * n_D / n_U can round to 1 - 1e-16
        print("warning: w_D n_D / (w_U n_U) is outside [1, 4/3], the range the KTO paper "
              "recommends; set --desirable_weight and --undesirable_weight to bring it in")
    return w_d, undesirable_weight


def checklist(rows: list[dict], *, steps: int, batch_size: int, source: str) -> list[dict]:
    """The rows, with the pairs whose chosen answer is the rejected one dropped (they carry no
    preference; DataError when every pair is such a tie), and a warning printed for each item
    of the DPO debugging checklist they fail: chosen answers much longer than rejected, and too
    few rows for the steps (each seen more than 10 times)."""
    if "chosen" in rows[0]:
        kept = [r for r in rows if r["chosen"] != r["rejected"]]
        if not kept:
            raise DataError(f"{source}: in every pair the chosen answer equals the rejected one: "
                            "there is no preference to learn")
        if len(kept) < len(rows):
            print(f"note: {source}: dropped {len(rows) - len(kept)} of {len(rows)} pairs whose "
                  "chosen answer equals the rejected one (no preference to learn)")
        rows = kept
        chosen = sum(len(r["chosen"].split()) for r in rows) / len(rows)
        rejected = sum(len(r["rejected"].split()) for r in rows) / len(rows)
        if chosen > 1.5 * rejected:
            print(f"warning: chosen answers are much longer than rejected ({chosen:.1f} vs "
                  f"{rejected:.1f} words): the model may learn length, not quality")
    epochs = steps * batch_size / len(rows)
    if epochs > 10:
        print(f"warning: {steps} steps of {batch_size} see each of the {len(rows)} rows about "
              f"{epochs:.0f} times: too little data for the steps, which overfits (the DPO "
              "checklist: a margin above 10, a loss near 0); give fewer --max_steps or more rows")
    return rows


def label_agreement(pairs: list[dict]) -> float:
    """Share of the pairs (true rewards not tied) whose label the true reward agrees with:
    how noisy the rater was."""
    diffs = [reward(r["prompt"], r["chosen"]) - reward(r["prompt"], r["rejected"]) for r in pairs]
    judged = [d for d in diffs if d != 0]
    return sum(d > 0 for d in judged) / max(1, len(judged))
