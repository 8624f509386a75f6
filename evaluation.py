"""A model's answers, and the numbers every lesson reports about them, judged by the toy
world's true reward (data.world.reward).

Answers: `generate` (texts for prompts, the KV-cache sampler), `rollout` (the online methods'
step 1: G answers per prompt as a training batch), `kept_answers` (the SFT model's answers,
sampled once and kept beside its checkpoint for every run that builds pairs from them).

Every script ends with `evaluate` on held-out prompts (one sample at temperature 1 and one
greedy answer each), and an aligned policy with `against_reference` beside the SFT model:
    accuracy          sampled answers that are correct
    accuracy_greedy   greedy answers that are correct
    reward_mean       mean true reward of the sampled answers
    persona/<name>    share of sampled answers in each persona
    mean_length       mean sampled completion length in tokens (end token included)
    unfinished        sampled answers that never reached the end token (cut off at the limit)
    answer_skill      accuracy of the sampled answers that mean to be right (answer_skill)
    eval_seconds      wall time of the evaluation
    win_rate_vs_sft   share of prompts where the policy's answer out-scores the SFT model's
    kl_to_ref         KL(pi || pi_ref) per answer, Monte-Carlo over the policy's answers
and, by script: implicit_reward_accuracy (DPO's), pass@G (GRPO's), rm_score (PPO's).
The sampled answers are kept, one row each, in <stage>_samples.jsonl: prompt, response and
what the means above are means of (reward, correct, length, finished, and kl beside the
reference), so that experiments/ can compare two runs prompt by prompt.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import torch

from data.batching import (MAX_NEW_TOKENS, chat_batch, decode_completion, encode_rows, end_id,
                           ended, in_batches, prompt_ids, rollout_batch, write_jsonl)
from data.pairs import pairs_from_samples
from data.tokenizer import get_tokenizer
from data.world import PERSONA_MIX, classify_persona, is_correct, parse_prompt, reward
from losses import answer_logps
from model import sample, sequence_scores


# ------------------------------------------------------------------ answers

def generate(model, prompts: list[str], *, temperature=1.0, num_samples=1, seed=0,
             max_new_tokens=MAX_NEW_TOKENS, batch_size=256, top_k=None):
    """Completions for each prompt: (texts, token id lists), row i*G+g = sample g of prompt i.

    The id lists hold the sampled tokens up to and including the first end token.
    """
    was_training = model.training
    model.eval()
    rng = torch.Generator().manual_seed(seed)
    texts, token_rows = [], []
    for i in range(0, len(prompts), batch_size):
        chunk = [prompt_ids(p) for p in prompts[i:i + batch_size]]
        tokens, mask = sample(model, chunk, max_new_tokens=max_new_tokens, end_id=end_id(),
                              temperature=temperature, top_k=top_k, num_samples=num_samples,
                              generator=rng)
        for row, m in zip(tokens.tolist(), mask.tolist()):
            ids = [t for t, keep in zip(row, m) if keep]
            token_rows.append(ids)
            texts.append(decode_completion(ids))
    model.train(was_training)
    return texts, token_rows


def rollout(policy, prompts: list[str], *, num_samples: int, max_new_tokens: int,
            temperature: float, generator, device) -> dict:
    """The online methods' step 1: num_samples answers to each prompt from the KV-cache sampler
    (one prefill per prompt, its cache copied into the group's rows), as a training batch
    (data.batching.rollout_batch: ids, loss mask, texts, finished, lengths)."""
    tokens, sampled = sample(policy, [prompt_ids(p) for p in prompts], end_id=end_id(),
                             max_new_tokens=max_new_tokens, temperature=temperature,
                             num_samples=num_samples, generator=generator)   # (N, T_new) each
    return rollout_batch(prompts, tokens, sampled, device)


def kept_answers(model, prompts: list[str], *, num_samples: int, seed: int,
                 beside: Path | None) -> list[str]:
    """generate()'s answers, num_samples per prompt (row i*K+k: answer k to prompt i). With
    `beside`, the checkpoint the model was loaded from, they are kept in a JSONL file next to
    it and read back by every later run from that checkpoint with the same prompts, K and
    seed: the methods trained from one SFT model share its samples. (Under torchrun every
    process draws the same answers, and the file is replaced whole: any writer's is the same.)"""
    if beside is None:
        return generate(model, prompts, num_samples=num_samples, seed=seed)[0]
    key = hashlib.sha1("\n".join(prompts).encode()).hexdigest()[:10]
    path = beside.with_name(f"{beside.stem}_answers_k{num_samples}_s{seed}_{key}.jsonl")
    if path.exists() and path.stat().st_mtime > beside.stat().st_mtime:
        print(f"the answers to the pairs' prompts: read from {path}", flush=True)
        return [a for line in path.read_text().splitlines() for a in json.loads(line)["answers"]]
    print(f"sampling {num_samples} answers to each of {len(prompts)} prompts from {beside} "
          f"(kept in {path.name} for every later run from it) ...", flush=True)
    texts = generate(model, prompts, num_samples=num_samples, seed=seed)[0]
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")        # whole, or not at all
    write_jsonl(tmp, [{"prompt": p, "answers": texts[i * num_samples:(i + 1) * num_samples]}
                      for i, p in enumerate(prompts)])
    os.replace(tmp, path)
    return texts


# ------------------------------------------------------------------ what every script reports

def evaluate(model, prompts: list[str], *, seed=0, samples_path=None):
    """(metrics, rows, token ids): the shared metrics (see the module docstring), and one
    sample per prompt, in prompt order: its row (sample_rows) and its token ids."""
    t0 = time.time()
    sampled, sampled_tokens = generate(model, prompts, temperature=1.0, seed=seed)
    greedy, _ = generate(model, prompts, temperature=0.0)
    rows = sample_rows(prompts, sampled, sampled_tokens)
    personas = [classify_persona(r) for r in sampled]
    n = len(prompts)
    metrics = {
        "accuracy": sum(r["correct"] for r in rows) / n,
        "accuracy_greedy": sum(is_correct(p, r) for p, r in zip(prompts, greedy)) / n,
        "reward_mean": sum(r["reward"] for r in rows) / n,
        **{f"persona/{name}": personas.count(name) / n for name in [*PERSONA_MIX, "other"]},
        "mean_length": sum(r["length"] for r in rows) / n,
        "unfinished": sum(not r["finished"] for r in rows) / n,
        "answer_skill": answer_skill(prompts, sampled),
    }
    if samples_path is not None:
        write_jsonl(samples_path, rows)
    metrics["eval_seconds"] = time.time() - t0
    return metrics, rows, sampled_tokens


def sample_rows(prompts, texts, token_rows) -> list[dict]:
    """One row per sampled answer: what evaluate's means are means of."""
    return [{"prompt": p, "response": r, "reward": reward(p, r), "correct": is_correct(p, r),
             "length": len(t), "finished": ended(t)}
            for p, r, t in zip(prompts, texts, token_rows)]


def answer_skill(prompts: list[str], responses: list[str]) -> float:
    """Accuracy among answers in a persona that means to be right (not careless or refusing)."""
    judged = [is_correct(p, r) for p, r in zip(prompts, responses)
              if classify_persona(r) in ("concise", "friendly", "chatty", "rude")]
    return sum(judged) / max(1, len(judged))


def against_reference(policy, reference, prompts, *, seed: int, samples_path):
    """The evaluation of an aligned policy beside its reference (the SFT model): (before,
    after, (reference's sampled tokens, policy's)), the metrics of each, and in after the
    policy's win rate against the reference's answers and its KL to the reference."""
    print(f"evaluating the policy and the SFT model on {len(prompts)} held-out prompts ...",
          flush=True)
    before, ref_rows, ref_tokens = evaluate(reference, prompts, seed=seed)
    after, rows, tokens = evaluate(policy, prompts, seed=seed)
    after["win_rate_vs_sft"] = win_rate(rows, ref_rows)
    kl = kl_per_answer(policy, reference, prompts, tokens)                    # (n,)
    after["kl_to_ref"] = kl.mean().item()
    write_jsonl(samples_path, [{**row, "kl": k} for row, k in zip(rows, kl.tolist())])
    return before, after, (ref_tokens, tokens)


def win_rate(rows, baseline_rows) -> float:
    """Share of prompts where the answer's true reward beats the baseline's answer's (rows of
    sample_rows, one per prompt, in the same order); ties count half."""
    wins = [0.5 if a["reward"] == b["reward"] else float(a["reward"] > b["reward"])
            for a, b in zip(rows, baseline_rows)]
    return sum(wins) / len(wins)


def kl_to_reference(policy, reference, prompts, token_rows) -> float:
    """Monte-Carlo KL(pi || pi_ref): mean over policy samples of sum_t log pi - log pi_ref.
    (An estimate from a few hundred answers: near 0 it can come out a little below 0.)"""
    return kl_per_answer(policy, reference, prompts, token_rows).mean().item()


@torch.no_grad()
def kl_per_answer(policy, reference, prompts, token_rows) -> torch.Tensor:
    """log pi(y|x) - log pi_ref(y|x) of each sampled answer y: (n,), on the CPU."""
    device = next(policy.parameters()).device

    def logps(model, prompt_rows, answers):
        inputs, targets, mask = chat_batch(prompt_rows, answers, device)
        return answer_logps(model(inputs), targets, mask).total            # (n,)
    ids = [prompt_ids(p) for p in prompts]
    return (in_batches(lambda p, a: logps(policy, p, a), ids, token_rows) -
            in_batches(lambda p, a: logps(reference, p, a), ids, token_rows)).cpu()


def path_point(policy, reference, prompts, *, seed: int, scorer=None) -> dict:
    """Where a policy stands mid-training (--eval_every): the mean true reward of one sampled
    answer to each prompt (evaluate's sampled answers) and its KL to the reference, with the
    seconds it took; with a scorer (PPO's reward model), its raw mean score of the same
    answers ("rm_score") and the share that never ended ("unfinished", what PPO's penalty
    would take off), each reported apart."""
    t0 = time.time()
    texts, tokens = generate(policy, prompts, seed=seed)
    point = {"reward": sum(reward(p, r) for p, r in zip(prompts, texts)) / len(prompts),
             "kl": kl_to_reference(policy, reference, prompts, tokens)}
    if scorer is not None:
        point["rm_score"] = scores_of_answers(scorer, [prompt_ids(p) for p in prompts],
                                              tokens).mean().item()
        point["unfinished"] = sum(not ended(t) for t in tokens) / len(tokens)
    return {**point, "seconds": time.time() - t0}


# ------------------------------------------------------------------ what pretraining reports

@torch.no_grad()
def plain_text_accuracy(model, prompts: list[str]) -> dict[str, float]:
    """Pretraining's: greedy completions of '<question> It is', the plain text pretraining
    reads (no chat format), judged on the first sentence. Returns the share of `prompts`
    answered right per task kind ("heldout/add", ...) and over all ("heldout/all")."""
    tok = get_tokenizer()
    ids = [[end_id()] + tok.encode_ordinary(p + " It is") for p in prompts]
    was_training = model.training
    model.eval()
    tokens, _ = sample(model, ids, max_new_tokens=6, end_id=end_id(), temperature=0.0,
                       generator=torch.Generator().manual_seed(0))    # greedy: draws unused
    model.train(was_training)
    right: dict[str, list[bool]] = {}
    for prompt, row in zip(prompts, tokens.tolist()):
        answer = tok.decode([t for t in row if t != end_id()]).split(".")[0].strip()
        task = parse_prompt(prompt)
        right.setdefault(f"heldout/{task.kind}", []).append(answer == task.answer)
    accuracy = {kind: sum(r) / len(r) for kind, r in sorted(right.items())}
    accuracy["heldout/all"] = sum(map(sum, right.values())) / len(prompts)
    return accuracy


# ------------------------------------------------------------------ what one method reports

@torch.no_grad()
def implicit_reward_accuracy(policy, reference, prompts, *, logps_of, rewards,
                             samples_per_prompt: int, seed: int) -> float:
    """DPO's: share of held-out pairs, the reference's answers to held-out prompts best against
    worst (data.pairs.pairs_from_samples), whose chosen answer the policy's implicit reward
    ranks first. logps_of(model, pairs, device) -> AnswerLogps (P, 2); rewards(policy's,
    reference's) -> (chosen (P,), rejected (P,)). NaN if no pair fits the context."""
    answers, _ = generate(reference, prompts, num_samples=samples_per_prompt, seed=seed)
    pairs = encode_rows(pairs_from_samples(prompts, answers, seed=seed),
                        reference.config.block_size, "held-out pairs", required=False)
    if not pairs:
        return float("nan")
    device = next(policy.parameters()).device
    chosen, rejected = rewards(*(in_batches(lambda b: logps_of(m, b, device), pairs,
                                            batch_size=128) for m in (policy, reference)))
    return (chosen > rejected).float().mean().item()


def pass_at(model, prompts, G: int, seed: int) -> float:
    """GRPO's: share of prompts with at least one right answer among G samples (pass@G)."""
    answers, _ = generate(model, prompts, num_samples=G, seed=seed)
    return sum(any(is_correct(p, a) for a in answers[i * G:(i + 1) * G])
               for i, p in enumerate(prompts)) / len(prompts)


@torch.no_grad()
def scores_of_answers(score_model, prompt_rows, answers) -> torch.Tensor:
    """A ScoreModel's score of every prompt + answer (token id lists), read at the answer's
    end token (model.sequence_scores), 256 rows at a time: (N,), on the model's device. The
    reward model's view of sampled answers: its normalisation, its evaluation, PPO's."""
    device = next(score_model.parameters()).device
    return in_batches(lambda p, a: sequence_scores(score_model, *chat_batch(p, a, device)),
                      prompt_rows, answers)
