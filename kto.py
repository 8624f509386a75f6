"""KTO's side of train_dpo.py (--loss kto): unpaired rows and one step's loss.

KTO (Ethayarajh et al. 2024) learns from answers labelled desirable or undesirable, one
at a time, instead of pairs. Rows follow TRL: {"prompt", "completion", "label"}.
    - By default the rows are the SFT model's own answers, the same K samples per prompt
      that DPO's pairs are built from (same seed), each labelled by a rule on the true
      reward: desirable when reward >= --desirable_reward.
    - --data: a file of such rows, or of {"prompt", "chosen", "rejected"} pairs, which is
      split into desirable chosen and undesirable rejected answers, as TRL does.
Departures from TRL, and why: --desirable_weight is set by default so that
w_D n_D = w_U n_U (TRL's default is 1 and a warning outside [1, 4/3]), since the
label rule's share of desirable answers is whatever the SFT model's is.
"""

import json
import random

import torch

from data.batching import encode_rows, read_jsonl
from data.world import reward
from distributed import all_gather
from evaluation import answer_logps, generate
from losses import kto_loss, kto_reference_point, nll_loss


def onpolicy_rows(model, prompts, cfg, seed) -> list[dict]:
    """K samples per prompt from the model (as onpolicy_pairs draws them), labelled by the rule."""
    K = cfg.samples_per_prompt
    answers, _ = generate(model, prompts, num_samples=K, seed=seed)
    return [{"prompt": p, "completion": a, "label": reward(p, a) >= cfg.desirable_reward}
            for i, p in enumerate(prompts) for a in answers[i * K:(i + 1) * K]]


def read_rows(path) -> list[dict]:
    """Unpaired rows from a JSONL file of rows or of pairs (split into their two halves)."""
    read_jsonl(path, ())                  # the file's own errors first (missing, not JSON)
    with open(path, encoding="utf-8-sig") as f:
        first = json.loads(next(line for line in f if line.strip()))
    if "chosen" not in first:
        return read_jsonl(path, ("prompt", "completion"), flags=("label",))
    pairs = read_jsonl(path, ("prompt", "chosen", "rejected"))
    return [{"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
            for r in pairs for k in ("chosen", "rejected")]


def imbalance(rows, ratio: float, seed: int) -> list[dict]:
    """rows with desirable ones dropped at random until n_D <= ratio * n_U (0: all kept)."""
    desirable = [r for r in rows if r["label"]]
    undesirable = [r for r in rows if not r["label"]]
    if ratio <= 0 or len(desirable) <= ratio * len(undesirable):
        return rows
    keep = random.Random(seed).sample(desirable, max(1, int(ratio * len(undesirable))))
    return keep + undesirable


def class_weights(cfg, rows) -> tuple[float, float]:
    """(w_D, w_U): --desirable_weight, or n_U / n_D when not given, so that w_D n_D = w_U n_U.
    Warns, as TRL does, when w_D n_D / (w_U n_U) is outside [1, 4/3] (the KTO paper's range)."""
    n_d = sum(r[2] for r in rows)
    n_u = len(rows) - n_d
    if n_d == 0 or n_u == 0:
        raise ValueError(f"KTO needs desirable and undesirable rows; got {n_d} and {n_u}")
    w_d = cfg.desirable_weight if cfg.desirable_weight is not None else n_u / n_d
    ratio = w_d * n_d / (cfg.undesirable_weight * n_u)
    print(f"kto: {n_d} desirable and {n_u} undesirable rows, weights {w_d:.3g} and "
          f"{cfg.undesirable_weight:.3g}: w_D n_D / (w_U n_U) = {ratio:.2f}")
    if not 1 <= ratio <= 4 / 3:
        print("warning: w_D n_D / (w_U n_U) is outside [1, 4/3], the range the KTO paper "
              "recommends; set --desirable_weight and --undesirable_weight to bring it in")
    return w_d, cfg.undesirable_weight


def encode(rows, block_size: int, source: str, required: bool = True):
    """(prompt ids, completion ids, desirable) per row; rows too long for the context dropped."""
    return encode_rows(rows, ("completion",), block_size, source, required, extra=("label",))


def step_loss(cfg, net, ref_model, batch, ref_logps, weights, device,
              loss_fn=None):
    """One KTO step's loss and metrics. batch: B rows (prompt ids, completion ids, desirable);
    ref_logps: the reference's AnswerLogps of these rows (precomputed)."""
    prompts, completions, labels = zip(*batch)
    desirable = torch.tensor(labels, device=device)                       # (B,) bool
    policy_logps = answer_logps(net, prompts, completions, device)
    # z0 from mismatched pairs: each completion under the next row's prompt (as TRL does)
    mismatched = completions[-1:] + completions[:-1]
    with torch.no_grad():
        policy_kl = answer_logps(net, prompts, mismatched, device).total
        ref_kl = answer_logps(ref_model, prompts, mismatched, device).total
    kl = kto_reference_point(all_gather(policy_kl), all_gather(ref_kl))   # over all processes
    losses, rewards = (loss_fn or kto_loss)(
        policy_logps.total, ref_logps.total, desirable, kl, beta=cfg.beta,
        desirable_weight=weights[0], undesirable_weight=weights[1])
    nll = nll_loss(policy_logps.mean[desirable]).sum() / len(batch)       # 0 without desirable rows
    loss = losses.mean() + cfg.rpo_alpha * nll
    logps = policy_logps.total.detach()
    return loss, {"kl": kl, "nll_loss": nll.detach(),
                  "rewards/chosen": masked_mean(rewards, desirable),
                  "rewards/rejected": masked_mean(rewards, ~desirable),
                  "logps/chosen": masked_mean(logps, desirable),
                  "logps/rejected": masked_mean(logps, ~desirable)}


def masked_mean(values, mask):
    """Mean over the rows where mask is True (NaN where there are none)."""
    return (values * mask).sum() / mask.sum()
