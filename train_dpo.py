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
  TRL's rpo_alpha): loss = dpo + rpo_alpha * losses.nll_loss. Without it
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
from typing import NamedTuple

import torch

from cli import AlignConfig, flag, run_cli
from data.batching import chat_batch, encode_rows, read_jsonl, to_device, write_jsonl
from data.world import PERSONA_MIX, eval_prompts, respond, reward, rl_rows, parse_prompt
from distributed import barrier, for_training, is_main, shard
from evaluation import evaluate, generate, kl_to_reference, win_rate
from losses import dpo_loss, ipo_loss, nll_loss, sequence_logprobs, simpo_loss
from model import autocast, save_checkpoint
from train_utils import (load_policy_and_reference, make_optimizer, optimizer_step, print_table,
                         save_json, set_lr, start_run)
from training_run import TrainingRun

# The default beta of each objective. IPO's tau acts on per-token means here: 0.1 asks
# for a 1/(2 tau) = 5-nat gap per token (KL to the reference reached 33), 0.5 for one nat.
BETA = {"dpo": 0.1, "ipo": 0.5, "simpo": 2.0}


@dataclass
class DPOConfig(AlignConfig):
    loss: str = flag("dpo", "which objective", "method", choices=["dpo", "ipo", "simpo"])
    beta: float = flag(None, "beta (DPO, SimPO) or tau (IPO) (default: 0.1 for dpo, 0.5 for "
                             "ipo, 2.0 for simpo)", "method", above=0)
    gamma: float = flag(0.5, "SimPO target margin", "method", at_least=0)
    label_smoothing: float = flag(0.0, "conservative DPO: assumed label-flip probability",
                                  "method", at_least=0)
    ipo_sum: bool = flag(False, "IPO on summed instead of per-token mean log-probs (the "
                                "default follows the IPO authors and TRL)", "method")
    rpo_alpha: float = flag(1.0, "weight of the NLL term on the chosen answers (RPO); "
                            "0 is the paper's loss, which runs away on this model", "method",
                            at_least=0)
    data: str = flag("", "JSONL of {prompt, chosen, rejected} pairs (default: build them)",
                     "data")
    pair_source: str = flag("onpolicy", "how to build pairs: onpolicy (SFT samples judged by "
                            "the reward) or offpolicy (two personas' answers)", "data",
                            choices=["onpolicy", "offpolicy"])
    num_prompts: int = flag(2000, "training prompts to build pairs from", "data", at_least=1)
    samples_per_prompt: int = flag(4, "on-policy samples per prompt", "data", at_least=2)
    label_temperature: float = flag(0.0, "0: best beats worst; > 0: Bradley-Terry labels",
                                    "data", at_least=0)
    live_ref: bool = flag(False, "keep a reference model and recompute its log-probs each step")
    # 2e-4: at 1e-4 some seeds' samples often began like a rejected answer ("Sorry",
    # "Hmm") and broke off into no persona (README, "How the defaults were chosen")
    learning_rate: float = flag(2e-4, "peak learning rate (AdamW)", above=0)
    batch_size: int = flag(32, "pairs per step", at_least=1)
    max_steps: int = flag(150, "optimizer steps", at_least=1)
    warmup_steps: int = flag(10, "linear warmup steps", at_least=0)

    def __post_init__(self):
        super().__post_init__()
        if self.beta is None:
            self.beta = BETA[self.loss]
        if self.label_smoothing >= 0.5:
            raise ValueError(f"--label_smoothing must be < 0.5, got {self.label_smoothing}")


# Smoke pairs come from the persona generator: an untrained smoke model's samples are
# byte soup that re-encodes longer than the context.
SMOKE = dict(num_prompts=64, max_steps=10, batch_size=8, eval_prompts=16,
             pair_source="offpolicy")


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
    answers, _ = generate(model, prompts, num_samples=K, seed=seed)
    pairs = []
    for i, p in enumerate(prompts):
        group = sorted(answers[i * K:(i + 1) * K], key=lambda r: reward(p, r))
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
    cache = Path(cfg.out_dir) / (f"pairs_{cfg.pair_source}_n{cfg.num_prompts}_k"
                                 f"{cfg.samples_per_prompt}_t{cfg.label_temperature}_"
                                 f"s{cfg.seed}.jsonl")
    fresh = cache.exists() and cache.stat().st_mtime > init.stat().st_mtime
    if is_main() and not fresh:  # one process builds them, the others wait and read
        prompts = [r["prompt"] for r in rl_rows(cfg.num_prompts, seed=cfg.seed + 100)]
        write_jsonl(cache, onpolicy_pairs(ref_model, prompts, cfg, cfg.seed)
                    if cfg.pair_source == "onpolicy" else offpolicy_pairs(prompts, cfg, cfg.seed))
    barrier()
    return read_jsonl(cache, ("prompt", "chosen", "rejected"))


def encode_pairs(pairs, block_size: int, source: str, required: bool = True):
    """(prompt, chosen, rejected) token ids; pairs too long for the context are dropped."""
    return encode_rows(pairs, ("chosen", "rejected"), block_size, source, required)


class PairLogps(NamedTuple):
    """log pi of each pair's answers, each (B,): summed over the answer's tokens, and the
    per-token mean (the length-normalised form SimPO and IPO use)."""
    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_mean: torch.Tensor
    rejected_mean: torch.Tensor

    def select(self, idx, device) -> "PairLogps":
        return PairLogps(*(to_device(t[idx], device) for t in self))


def pair_logps(model, batch, device) -> PairLogps:
    """One concatenated forward over chosen and rejected answers (B pairs -> 2B rows)."""
    B = len(batch)
    prompts = [p for p, _, _ in batch] * 2
    completions = [c for _, c, _ in batch] + [r for _, _, r in batch]
    inputs, targets, mask = chat_batch(prompts, completions, device)
    with autocast(device):
        logits = model(inputs)                                        # (2B, T, V)
    total = sequence_logprobs(logits, targets, mask)                  # (2B,)
    mean = total / mask.sum(-1)
    return PairLogps(total[:B], total[B:], mean[:B], mean[B:])


@torch.no_grad()
def pair_logps_of_all(model, encoded, device, batch_size=128) -> PairLogps:
    """pair_logps of every pair, in chunks, kept on the CPU: the frozen reference's are
    computed once before training, the policy's for the held-out evaluation."""
    parts = [pair_logps(model, encoded[i:i + batch_size], device)
             for i in range(0, len(encoded), batch_size)]
    return PairLogps(*(torch.cat(column).float().cpu() for column in zip(*parts)))


def preference_loss(cfg, policy: PairLogps, ref: PairLogps, loss_fn=None):
    """(losses, chosen_rewards, rejected_rewards) of the objective cfg.loss, with the
    log-probs it takes (sums or per-token means). loss_fn, if given, stands in for the
    losses.py function of cfg.loss; it gets the same arguments, hyperparameters by keyword."""
    if cfg.loss == "dpo":
        return (loss_fn or dpo_loss)(policy.chosen, policy.rejected, ref.chosen, ref.rejected,
                                     beta=cfg.beta, label_smoothing=cfg.label_smoothing)
    if cfg.loss == "ipo":
        if cfg.ipo_sum:
            return (loss_fn or ipo_loss)(policy.chosen, policy.rejected, ref.chosen,
                                         ref.rejected, beta=cfg.beta)
        return (loss_fn or ipo_loss)(policy.chosen_mean, policy.rejected_mean, ref.chosen_mean,
                                     ref.rejected_mean, beta=cfg.beta)
    return (loss_fn or simpo_loss)(policy.chosen_mean, policy.rejected_mean, beta=cfg.beta,
                                   gamma=cfg.gamma)


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

def train(cfg, policy, ref_model, encoded, ref_logps: PairLogps | None, device, loss_fn=None):
    """The training loop. ref_logps: the reference's log-probs of every pair (None: --live_ref)."""
    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(policy, cfg.compile)
    rng = torch.Generator().manual_seed(cfg.seed)
    with TrainingRun(cfg.loss, cfg, policy, opt, rng, cfg.max_steps, log_every=25,
                     show=("loss", "rewards/margins")) as run:
        for step in range(run.start, cfg.max_steps):
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            idx = shard(torch.randint(len(encoded), (cfg.batch_size,), generator=rng))
            batch = [encoded[i] for i in idx.tolist()]                  # (prompt, chosen, rejected)
            policy_logps = pair_logps(net, batch, device)
            if cfg.live_ref:
                with torch.no_grad():
                    batch_ref_logps = pair_logps(ref_model, batch, device)
            else:
                batch_ref_logps = ref_logps.select(idx, device)
            losses, chosen_rewards, rejected_rewards = preference_loss(
                cfg, policy_logps, batch_ref_logps, loss_fn)
            nll = nll_loss(policy_logps.chosen_mean).mean()
            loss = losses.mean() + cfg.rpo_alpha * nll                 # RPO (Pang et al. 2024, Eq. 1)
            loss.backward()
            optimizer_step(policy, opt, cfg.grad_clip)
            run.log(step, {"loss": loss.detach(), "nll_loss": nll.detach(), "lr": lr,
                           **preference_metrics(policy_logps, chosen_rewards, rejected_rewards)})


def preference_metrics(policy_logps: PairLogps, chosen_rewards, rejected_rewards) -> dict:
    """The DPO dashboard (TRL's names), as tensors: read back when the run logs them."""
    return {"rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
            "logps/chosen": policy_logps.chosen.detach().mean(),
            "logps/rejected": policy_logps.rejected.detach().mean()}


@torch.no_grad()
def implicit_reward_accuracy(cfg, policy, ref_model, device, loss_fn=None):
    """Share of held-out pairs (on-policy from the reference, best against worst) where
    the policy's implicit reward ranks chosen above rejected."""
    heldout = onpolicy_pairs(ref_model, eval_prompts(cfg.eval_prompts), replace(
        cfg, label_temperature=0.0), cfg.seed + 1)
    encoded = encode_pairs(heldout, policy.config.block_size, "held-out pairs", required=False)
    if not encoded:
        return float("nan")
    _, chosen_rewards, rejected_rewards = preference_loss(
        cfg, pair_logps_of_all(policy, encoded, device),
        pair_logps_of_all(ref_model, encoded, device), loss_fn)
    return (chosen_rewards > rejected_rewards).float().mean().item()


def main(cfg: DPOConfig, loss_fn=None) -> dict:
    """Train, save, evaluate; returns the aligned model's metrics. loss_fn (the notebooks
    pass their own) replaces the losses.py function of --loss, with the same signature."""
    cfg, device = start_run(cfg, SMOKE, outputs=[f"{cfg.loss}.pt"])
    t0 = time.time()
    policy, ref_model, init = load_policy_and_reference(cfg, device)
    train_pairs = build_pairs(ref_model, init, cfg)
    warn_if_suspicious(cfg, train_pairs)
    encoded = encode_pairs(train_pairs, ref_model.config.block_size, cfg.data or "pairs")
    ref_logps = None if cfg.live_ref else pair_logps_of_all(ref_model, encoded, device)
    print(f"{cfg.loss} on {len(encoded)} pairs, beta {cfg.beta}, "
          f"{'live' if cfg.live_ref else 'precomputed'} reference")
    train(cfg, policy, ref_model, encoded, ref_logps, device, loss_fn)
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
