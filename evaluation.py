"""The evaluation every stage ends with, judged by the toy world's true reward
(data.world.reward): it samples from a model, so it lives beside model.py, not in data/.
The training scripts take their samples (rollout) and log-probs (answer_logps,
answer_token_logps) from here too, so that training and evaluation measure alike.

On held-out prompts: one sample at temperature 1 and one greedy answer each.
    accuracy          sampled answers that are correct
    accuracy_greedy   greedy answers that are correct
    reward_mean       mean true reward of the sampled answers
    persona/<name>    share of sampled answers in each persona
    mean_length       mean sampled completion length in tokens (end token included)
    answer_skill      accuracy of the sampled answers that mean to be right (see answer_skill)
    seconds           wall time of the evaluation
"""

import time
from typing import NamedTuple

import torch

from data.batching import chat_batch, decode_completion, end_id, prompt_ids, to_device, write_jsonl
from data.world import PERSONA_MIX, classify_persona, is_correct, reward
from losses import sequence_logprobs, token_logprobs
from model import autocast, sample

MAX_NEW_TOKENS = 48  # the longest persona answer is 37 tokens


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
    """The RL scripts' samples as a training batch: num_samples answers to each prompt from
    the KV-cache sampler (row i*G+g is answer g to prompt i), with
        prompt_ids, rows    token id lists (N): the prompt, the answer up to its end token
        prompts, texts      the prompt and the decoded answer of each row (N)
        inputs, targets, mask  the rows as chat_batch lays them out, (N, T) each
        finished, lengths   (N,) float: 1.0 where the answer ended with the end token; its tokens
    """
    ids = [prompt_ids(p) for p in prompts]
    tokens, sampled = sample(policy, ids, max_new_tokens=max_new_tokens, end_id=end_id(),
                             temperature=temperature, num_samples=num_samples,
                             generator=generator)                          # (N, T_new) each
    rows = [[t for t, keep in zip(r, m) if keep] for r, m in zip(tokens.tolist(), sampled.tolist())]
    row_prompt_ids = [i for i in ids for _ in range(num_samples)]
    inputs, targets, mask = chat_batch(row_prompt_ids, rows, device)
    return dict(prompt_ids=row_prompt_ids, rows=rows,
                prompts=[p for p in prompts for _ in range(num_samples)],
                texts=[decode_completion(r) for r in rows],
                inputs=inputs, targets=targets, mask=mask,
                finished=torch.tensor([float(bool(r) and r[-1] == end_id()) for r in rows]),
                lengths=torch.tensor([len(r) for r in rows], dtype=torch.float))


def evaluate(model, prompts: list[str], *, seed=0, samples_path=None):
    """(metrics, sampled responses, their token ids): the shared metrics (see the module
    docstring), and one sample per prompt, in prompt order."""
    t0 = time.time()
    sampled, sampled_tokens = generate(model, prompts, temperature=1.0, seed=seed)
    greedy, _ = generate(model, prompts, temperature=0.0)
    rewards = [reward(p, r) for p, r in zip(prompts, sampled)]
    personas = [classify_persona(r) for r in sampled]
    n = len(prompts)
    metrics = {
        "accuracy": sum(is_correct(p, r) for p, r in zip(prompts, sampled)) / n,
        "accuracy_greedy": sum(is_correct(p, r) for p, r in zip(prompts, greedy)) / n,
        "reward_mean": sum(rewards) / n,
        **{f"persona/{name}": personas.count(name) / n for name in [*PERSONA_MIX, "other"]},
        "mean_length": sum(len(t) for t in sampled_tokens) / n,
        "answer_skill": answer_skill(prompts, sampled),
    }
    if samples_path is not None:
        write_jsonl(samples_path, [{"prompt": p, "response": r, "reward": w}
                                   for p, r, w in zip(prompts, sampled, rewards)])
    metrics["seconds"] = time.time() - t0
    return metrics, sampled, sampled_tokens


def answer_skill(prompts: list[str], responses: list[str]) -> float:
    """Accuracy among answers in a persona that means to be right (not careless or refusing)."""
    judged = [is_correct(p, r) for p, r in zip(prompts, responses)
              if classify_persona(r) in ("concise", "friendly", "chatty", "rude")]
    return sum(judged) / max(1, len(judged))


class AnswerLogps(NamedTuple):
    """log pi(answer | prompt) of each row, (N,): summed over the answer's tokens, and the
    per-token mean (the length-normalised form SimPO, IPO and ORPO use)."""
    total: torch.Tensor
    mean: torch.Tensor

    def select(self, idx, device) -> "AnswerLogps":
        return AnswerLogps(*(to_device(t[idx], device) for t in self))


def answer_token_logps(model, inputs, targets, mask, temperature: float = 1.0):
    """Per-token log-probs of the answers' tokens under `model`, (N, T), zero off the mask. The
    logits are divided by the sampling temperature, so an RL ratio compares the distribution
    the answers were drawn from."""
    with autocast(inputs.device):
        logits = model(inputs)                                            # (N, T, V)
    return token_logprobs(logits.float() / temperature, targets) * mask


def answer_logps(model, prompts: list[list[int]], answers: list[list[int]], device) -> AnswerLogps:
    """One forward over the rows prompt + answer (token ids); the training scripts' log-probs."""
    inputs, targets, mask = chat_batch(prompts, answers, device)
    with autocast(device):
        logits = model(inputs)                                            # (N, T, V)
    total = sequence_logprobs(logits, targets, mask)                      # (N,)
    return AnswerLogps(total, total / mask.sum(-1))


@torch.no_grad()
def answer_logps_of_all(model, prompts: list[list[int]], answers: list[list[int]],
                        batch_size=256) -> AnswerLogps:
    """answer_logps of every row, batch_size rows at a time, kept on the CPU."""
    device = next(model.parameters()).device
    parts = [answer_logps(model, prompts[i:i + batch_size], answers[i:i + batch_size], device)
             for i in range(0, len(prompts), batch_size)]
    return AnswerLogps(*(torch.cat(column).float().cpu() for column in zip(*parts)))


def kl_to_reference(policy, reference, prompts, token_rows) -> float:
    """Monte-Carlo KL(pi || pi_ref): mean over policy samples of sum_t log pi - log pi_ref."""
    ids = [prompt_ids(p) for p in prompts]
    return (answer_logps_of_all(policy, ids, token_rows).total -
            answer_logps_of_all(reference, ids, token_rows).total).mean().item()


def win_rate(prompts, responses, baseline_responses) -> float:
    """Share of prompts where the response out-scores the baseline's; ties count half."""
    wins = [0.5 if a == b else float(a > b) for a, b in
            ((reward(p, r), reward(p, s)) for p, r, s in zip(prompts, responses, baseline_responses))]
    return sum(wins) / len(wins)
