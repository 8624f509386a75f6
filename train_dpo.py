"""Offline preference optimisation from the SFT model: DPO, IPO or SimPO.

    python train_dpo.py                       # DPO, beta 0.1, on-policy pairs
    python train_dpo.py --loss ipo            # IPO (beta is the paper's tau)
    python train_dpo.py --loss simpo          # SimPO: no reference model
    python train_dpo.py --data pairs.jsonl    # your own {"prompt","chosen","rejected"} rows

DPO in five steps (Rafailov et al. 2023):
1. RLHF objective: max_pi E[r(x, y)] - beta KL(pi(.|x) || pi_ref(.|x)).
2. Its optimum in closed form: pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x).
3. Solve for the reward: r(x, y) = beta log(pi*(y|x) / pi_ref(y|x)) + beta log Z(x).
4. Bradley-Terry: P(y_w > y_l) = sigmoid(r(x, y_w) - r(x, y_l)); Z(x) cancels.
5. Maximum likelihood over preference pairs with pi in place of pi*:
   loss = -log sigmoid(beta [log pi/pi_ref (y_w) - log pi/pi_ref (y_l)])   (losses.dpo_loss)

Where this departs from the paper, and why:
- The loss adds an NLL term on the chosen answers, as Iterative RPO does (Pang et
  al. 2024, eq. 1: DPO + the chosen answer's length-normalised NLL, weight 1;
  TRL's rpo_alpha): loss = dpo + rpo_alpha * mean_t(-log pi(y_w,t)). Without it
  (--rpo_alpha 0, the paper's loss) DPO's pull on the rejected answers drags the
  chosen ones down too (their log-probs fell from -2.0 to -16.7 nats in the 150
  default steps) and the samples stutter ("it it it it is 15.").
- Pairs are on-policy by default: several samples per training prompt from the
  SFT model, judged by the toy world's true reward (standing in for a human),
  chosen = best and rejected = worst, ties dropped. The paper used fixed datasets.
  --label_temperature T > 0 samples labels from Bradley-Terry instead,
  P(a beats b) = sigmoid((r_a - r_b) / T), so labels are noisy as a human's are.
- Reference log-probs are computed once before training (the reference is frozen,
  so this is exact); --live_ref recomputes them every step with a second model.
- IPO uses per-token mean log-probs by default (as its authors and TRL do);
  --ipo_sum uses sums. SimPO always uses means.
"""

import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from data.batching import chat_batch, encode_rows, read_jsonl, to_device, write_jsonl
from data.evaluation import evaluate, generate, kl_to_reference, win_rate
from data.world import PERSONA_MIX, eval_prompts, respond, reward, rl_rows, parse_prompt
from losses import dpo_loss, ipo_loss, sequence_logprobs, simpo_loss
from model import autocast, save_checkpoint
from train_utils import (AlignConfig, barrier, flag, for_training, is_main,
                         load_policy_and_reference, make_optimizer, optimizer_step, print_table,
                         run_cli, run_steps, save_json, set_lr, shard, start_run)

# The default beta of each objective. IPO's tau acts on per-token means here: 0.1 asks
# for a 1/(2 tau) = 5-nat gap per token (KL to the reference reached 33), 0.5 for one nat.
BETA = {"dpo": 0.1, "ipo": 0.5, "simpo": 2.0}


@dataclass
class DPOConfig(AlignConfig):
    loss: str = flag("dpo", "which objective", choices=["dpo", "ipo", "simpo"])
    beta: float = flag(None, "beta (DPO/SimPO) or tau (IPO); default 0.1, 0.5, 2.0 (BETA)",
                       above=0)
    gamma: float = flag(0.5, "SimPO target margin", at_least=0)
    label_smoothing: float = flag(0.0, "conservative DPO: assumed label-flip probability",
                                  at_least=0)
    ipo_sum: bool = flag(False, "IPO on summed instead of per-token mean log-probs")
    rpo_alpha: float = flag(1.0, "weight of the NLL term on the chosen answers (RPO); "
                            "0 is the paper's loss, which runs away on this model", at_least=0)
    # data
    data: str = flag("", "JSONL of {prompt, chosen, rejected} pairs (default: build them)")
    pairs: str = flag("onpolicy", "how to build pairs: onpolicy (SFT samples judged by the "
                      "reward) or offpolicy (two personas' answers)",
                      choices=["onpolicy", "offpolicy"])
    num_prompts: int = flag(2000, "training prompts to build pairs from", at_least=1)
    samples_per_prompt: int = flag(4, "on-policy samples per prompt", at_least=2)
    label_temperature: float = flag(0.0, "0: best beats worst; > 0: Bradley-Terry labels",
                                    at_least=0)
    # training
    live_ref: bool = flag(False, "keep a reference model and recompute its log-probs each step")
    # 2e-4: at 1e-4 some seeds' samples often began like a rejected answer ("Sorry",
    # "Hmm") and broke off into no persona (README, "Numbers that hold")
    learning_rate: float = flag(2e-4, "peak learning rate (AdamW)", above=0)
    batch_size: int = flag(32, "pairs per step", at_least=1)
    max_steps: int = flag(150, "optimizer steps", at_least=1)
    warmup_steps: int = flag(10, "linear warmup steps", at_least=0)

    def __post_init__(self):
        super().__post_init__()
        if self.label_smoothing >= 0.5:
            raise ValueError(f"--label_smoothing must be < 0.5, got {self.label_smoothing}")


# Smoke pairs come from the persona generator: an untrained smoke model's samples are
# byte soup that re-encodes longer than the context.
SMOKE = dict(num_prompts=64, max_steps=10, batch_size=8, eval_prompts=16, pairs="offpolicy")


# ------------------------------------------------------------------ pairs

def label(rng, prompt, a, b, temperature):
    """(chosen, rejected) from two responses, or None for a tie under deterministic labels."""
    ra, rb = reward(prompt, a), reward(prompt, b)
    if temperature > 0:
        a_wins = rng.random() < 1 / (1 + math.exp(-(ra - rb) / temperature))  # Bradley-Terry
        return (a, b) if a_wins else (b, a)
    if ra == rb:
        return None
    return (a, b) if ra > rb else (b, a)


def onpolicy_pairs(model, prompts, cfg, seed):
    """Sample K answers per prompt from the model; best vs worst (or two random ones, BT)."""
    K, rng = cfg.samples_per_prompt, random.Random(seed)
    texts, _ = generate(model, prompts, num_samples=K, seed=seed)
    pairs = []
    for i, p in enumerate(prompts):
        group = sorted(texts[i * K:(i + 1) * K], key=lambda r: reward(p, r))
        a, b = (group[-1], group[0]) if cfg.label_temperature == 0 else rng.sample(group, 2)
        if a != b and (lab := label(rng, p, a, b, cfg.label_temperature)):
            pairs.append({"prompt": p, "chosen": lab[0], "rejected": lab[1]})
    return pairs


def offpolicy_pairs(prompts, cfg, seed):
    """Two different personas answer each prompt (written by the generator, not the model)."""
    rng, pairs = random.Random(seed), []
    for p in prompts:
        task = parse_prompt(p)
        a, b = (respond(task, persona, rng) for persona in rng.sample(list(PERSONA_MIX), 2))
        if lab := label(rng, p, a, b, cfg.label_temperature):
            pairs.append({"prompt": p, "chosen": lab[0], "rejected": lab[1]})
    return pairs


def build_pairs(ref_model, init, cfg):
    """Training pairs: from --data, or built and cached in out_dir."""
    if cfg.data:
        return read_jsonl(cfg.data, ("prompt", "chosen", "rejected"))
    cache = Path(cfg.out_dir) / (f"pairs_{cfg.pairs}_n{cfg.num_prompts}_k"
                                 f"{cfg.samples_per_prompt}_t{cfg.label_temperature}_"
                                 f"s{cfg.seed}.jsonl")
    fresh = cache.exists() and cache.stat().st_mtime > init.stat().st_mtime
    if is_main() and not fresh:  # one process builds them, the others wait and read
        prompts = [r["prompt"] for r in rl_rows(cfg.num_prompts, seed=cfg.seed + 100)]
        write_jsonl(cache, onpolicy_pairs(ref_model, prompts, cfg, cfg.seed)
                    if cfg.pairs == "onpolicy" else offpolicy_pairs(prompts, cfg, cfg.seed))
    barrier()
    return read_jsonl(cache, ("prompt", "chosen", "rejected"))


def encode_pairs(pairs, block_size: int, source: str, required: bool = True):
    """(prompt, chosen, rejected) token ids; pairs too long for the context are dropped."""
    return encode_rows(pairs, ("chosen", "rejected"), block_size, source, required)


def pair_logps(model, batch, device):
    """One concatenated forward over chosen and rejected: sum and mean log-probs, each (B,)."""
    B = len(batch)
    prompts = [p for p, _, _ in batch] * 2
    completions = [c for _, c, _ in batch] + [r for _, _, r in batch]
    inputs, targets, mask = chat_batch(prompts, completions, device)
    with autocast(device):
        logits = model(inputs)                                        # (2B, T, V)
    total = sequence_logprobs(logits, targets, mask)                  # (2B,)
    mean = total / mask.sum(-1)
    return total[:B], total[B:], mean[:B], mean[B:]


@torch.no_grad()
def reference_logps(ref_model, encoded, device, batch_size=128):
    """Precomputed once: the frozen reference's (sum, mean) log-probs for every pair."""
    parts = [pair_logps(ref_model, encoded[i:i + batch_size], device)
             for i in range(0, len(encoded), batch_size)]
    return [torch.cat([p[k] for p in parts]).float().cpu() for k in range(4)]   # on the CPU


def preference_loss(cfg, policy, ref, loss_fn=None):
    """Dispatch to the chosen loss; policy and ref are (sum_c, sum_r, mean_c, mean_r).
    loss_fn, if given, stands in for the losses.py function of cfg.loss (same signature)."""
    if cfg.loss == "dpo":
        return (loss_fn or dpo_loss)(policy[0], policy[1], ref[0], ref[1], cfg.beta,
                                     cfg.label_smoothing)
    if cfg.loss == "ipo":
        k = 0 if cfg.ipo_sum else 2
        return (loss_fn or ipo_loss)(policy[k], policy[k + 1], ref[k], ref[k + 1], cfg.beta)
    return (loss_fn or simpo_loss)(policy[2], policy[3], cfg.beta, cfg.gamma)


# ------------------------------------------------------------------ checks

def warn_if_suspicious(cfg, pairs):
    """Warnings from the DPO debugging checklist (load_policy_and_reference warns when the
    start is not an SFT checkpoint)."""
    sensible = {"dpo": (0.01, 1.0), "ipo": (0.01, 1.0), "simpo": (0.5, 10.0)}[cfg.loss]
    if not sensible[0] <= cfg.beta <= sensible[1]:
        print(f"warning: beta {cfg.beta} is outside the usual range {sensible} for {cfg.loss}")
    chosen = sum(len(r["chosen"].split()) for r in pairs) / len(pairs)
    rejected = sum(len(r["rejected"].split()) for r in pairs) / len(pairs)
    if chosen > 1.5 * rejected:
        print(f"warning: chosen answers are much longer than rejected ({chosen:.1f} vs "
              f"{rejected:.1f} words): the model may learn length instead of quality")


# ------------------------------------------------------------------ main

def train(cfg, policy, ref_model, encoded, ref, device, loss_fn=None):
    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(policy, cfg.compile)
    gen = torch.Generator().manual_seed(cfg.seed)

    def step_fn(step):
        lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
        idx = shard(torch.randint(len(encoded), (cfg.batch_size,), generator=gen))
        batch = [encoded[i] for i in idx.tolist()]
        policy_out = pair_logps(net, batch, device)
        if cfg.live_ref:
            with torch.no_grad():
                ref_out = pair_logps(ref_model, batch, device)
        else:
            ref_out = [to_device(r[idx], device) for r in ref]
        losses, chosen_rewards, rejected_rewards = preference_loss(cfg, policy_out, ref_out,
                                                                   loss_fn)
        nll = -policy_out[2].mean()                    # chosen answers' mean -log pi per token
        loss = losses.mean() + cfg.rpo_alpha * nll     # RPO (Pang et al. 2024, eq. 1)
        loss.backward()
        optimizer_step(policy, opt, cfg.grad_clip)
        chosen, rejected = policy_out[0].detach(), policy_out[1].detach()
        return {"loss": loss.detach(), "nll_loss": nll.detach(),
                "rewards/chosen": chosen_rewards.mean(),
                "rewards/rejected": rejected_rewards.mean(),
                "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
                "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
                "logps/chosen": chosen.mean(), "logps/rejected": rejected.mean(), "lr": lr}

    run_steps(cfg.loss, cfg, policy, opt, gen, cfg.max_steps, step_fn, 25,
              lambda m: f"loss {m['loss']:.3f} margin {m['rewards/margins']:.2f}")


@torch.no_grad()
def implicit_reward_accuracy(cfg, policy, ref_model, device, loss_fn=None):
    """Share of held-out pairs (on-policy from the reference, best against worst) where
    the policy's implicit reward ranks chosen above rejected."""
    heldout = onpolicy_pairs(ref_model, eval_prompts(cfg.eval_prompts), replace(
        cfg, label_temperature=0.0), cfg.seed + 1)
    encoded = encode_pairs(heldout, policy.config.block_size, "held-out pairs", required=False)
    if not encoded:
        return float("nan")
    policy_out = reference_logps(policy, encoded, device)
    ref_out = reference_logps(ref_model, encoded, device)
    _, chosen_rewards, rejected_rewards = preference_loss(cfg, policy_out, ref_out, loss_fn)
    return (chosen_rewards > rejected_rewards).float().mean().item()


def main(cfg: DPOConfig, loss_fn=None) -> dict:
    """Train, save, evaluate; returns the aligned model's metrics. loss_fn (the notebooks
    pass their own) replaces the losses.py function of --loss, with the same signature."""
    cfg, device = start_run(cfg, SMOKE)
    if cfg.beta is None:
        cfg = replace(cfg, beta=BETA[cfg.loss])
    t0 = time.time()
    policy, ref_model, init = load_policy_and_reference(cfg, device)
    train_pairs = build_pairs(ref_model, init, cfg)
    warn_if_suspicious(cfg, train_pairs)
    encoded = encode_pairs(train_pairs, ref_model.config.block_size, cfg.data or "pairs")
    ref = None if cfg.live_ref else reference_logps(ref_model, encoded, device)
    print(f"{cfg.loss} on {len(encoded)} pairs, beta {cfg.beta}, "
          f"{'live' if cfg.live_ref else 'precomputed'} reference")
    train(cfg, policy, ref_model, encoded, ref, device, loss_fn)
    train_seconds = time.time() - t0
    if not is_main():
        return {}
    save_checkpoint(Path(cfg.out_dir) / f"{cfg.loss}.pt", policy, asdict(cfg), cfg.max_steps,
                    stage=cfg.loss)

    prompts = eval_prompts(cfg.eval_prompts)
    out = Path(cfg.out_dir)
    before, sft_samples, _ = evaluate(ref_model, prompts, seed=cfg.seed)
    after, samples, sample_tokens = evaluate(policy, prompts, seed=cfg.seed,
                                             samples_path=out / f"{cfg.loss}_samples.jsonl")
    after["win_rate_vs_sft"] = win_rate(prompts, samples, sft_samples)
    after["kl_to_ref"] = kl_to_reference(policy, ref_model, prompts, sample_tokens)
    after["implicit_reward_accuracy"] = implicit_reward_accuracy(cfg, policy, ref_model, device,
                                                               loss_fn)
    after["train_seconds"] = train_seconds
    save_json(out / f"{cfg.loss}_eval.json", after)
    print_table({"sft": before, cfg.loss: after},
                title=f"\nSFT vs {cfg.loss} (beta {cfg.beta}) on {len(prompts)} held-out prompts")
    return after


if __name__ == "__main__":
    run_cli(main, DPOConfig, __doc__)
