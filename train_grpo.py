"""Online RL from groups of samples, from the SFT model: GRPO, Dr. GRPO, RLOO and rejection
sampling.

    python train_grpo.py                        # GRPO: G = 8 answers per prompt, beta 0.04
    python train_grpo.py --reward judge --kl_in reward --out_dir out/grpo_kl_reward --init_from out/sft.pt
    python train_grpo.py --loss_type dr_grpo --scale_rewards none --out_dir out/dr_grpo --init_from out/sft.pt
    python train_grpo.py --advantage rloo --reward judge --out_dir out/rloo --init_from out/sft.pt

GRPO in four steps (Shao et al. 2024, DeepSeekMath, Sec. 4.1):
1. Sample: for each prompt q, draw a group of G answers o_1..o_G from the current
   ("old") policy, with one KV-cache prefill per prompt (evaluation.rollout).
2. Score: r_i from a rule, with no reward model: 1 if o_i's final answer is right,
   else 0 (--reward rule); or the toy world's whole true reward, the judge that labels
   DPO's pairs (--reward judge), so that GRPO and DPO can be set side by side.
3. Advantage: A_i = (r_i - mean(r)) / std(r) within the group, shared by every
   token of o_i (losses.grpo_advantages). No critic: the group is the baseline.
4. Update: maximise min(ratio A, clip(ratio, 1-eps, 1+eps) A) - beta KL per token
   (losses.grpo_loss, Eq. 3 with the k3 estimate of Eq. 4), --num_iterations times on the
   same samples.

Where the KL goes (--kl_in). The KL that pi* = pi_ref exp(r / beta) / Z regularises, the
optimum compare.py's ceiling is made of, is KL(pi || pi_ref). The paper's k3 term in the loss
(--kl_in loss, the default) has, on the policy's own samples, the expected gradient of the
other one, KL(pi_ref || pi), for a one-token answer, and for longer ones a token-by-token
part of it that is the gradient of no objective (losses.grpo_loss; tests/test_kl_bandit.py
shows both), so GRPO as written stops at another fixed point than pi*. --kl_in reward puts
the KL where PPO and RLOO put it: beta times k1 summed over each answer, subtracted from its
reward before step 3 (losses.kl_penalised_rewards), whose expected gradient is that of
E[r] - beta KL(pi || pi_ref). GRPO's std scaling then still divides each group by its own
spread, and the "grpo" loss each answer by its length, so no one objective is climbed; but
pi* is still where the update is zero (there every answer's penalised reward is beta log Z,
and every advantage 0), though near it the scaling keeps the steps large. With
--scale_rewards none and --loss_type dr_grpo (no length weight), one update per batch and
every answer in the loss (--no-mask_truncated), the update is the policy gradient of
E[r] - beta KL(pi || pi_ref) itself, up to a constant: Dr. GRPO (Liu et al. 2025) with the
KL in the reward.

--advantage swaps step 3 (and 4) for the field's other online methods, in the same loop:
- rloo: RLOO (Ahmadian et al. 2024, TRL's RLOOTrainer): the KL in the reward (k1 summed over
  the answer), A_i = its penalised reward - the mean of the other G - 1 answers', no std, and
  the whole answer as one action: a sequence-level ratio, clipped, the mean over answers
  (losses.rloo_loss). Its objective is E[r] - beta KL(pi || pi_ref) (with every answer in
  the loss: --no-mask_truncated, TRL's default).
- best: A = 1 for each group's best answer (ties at random), 0 for the rest: online
  rejection sampling (RAFT, Dong et al. 2023; ReST-like). With one update per batch the
  clipped ratio is 1, so the step is SFT on the best answers (plus beta KL): it learns to
  give first what best-of-G would pick; it is not best-of-G at inference (one sample is
  drawn), and a group whose answers all score alike still trains on one of them.

Departures from DeepSeekMath's GRPO, and why:
- The reward is the toy world's, not a learned reward model.
- --num_iterations defaults to 1: one update per batch, so at that update the
  policy *is* the old policy, the ratio is exactly 1 and the clip never acts; the
  loss's gradient is then the plain policy gradient with group advantages. With
  more iterations old_logps are frozen at sampling time and the clip matters.
- --loss_type and --scale_rewards offer the later fixes: Dr. GRPO (Liu et al. 2025)
  drops the per-sequence length average and the std scaling, DAPO (Yu et al. 2025)
  averages over all tokens of the batch.
- Completions cut off at --max_new_tokens without an end token are left out of
  the loss by default (--mask_truncated, DAPO's overlong filtering); their share
  is logged as completions/truncated. With the KL in the reward each still pays its
  KL over all its tokens, as in TRL, so the group's mean, std and leave-one-out
  baselines see its penalised reward, not a KL-free one.
- The frozen SFT reference is kept only when beta > 0. Every log-prob pass divides
  the logits by the sampling temperature, so ratios compare the sampled distribution.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from data.batching import MAX_NEW_TOKENS
from data.world import eval_prompts, is_correct, reward, rl_rows
from evaluation import against_reference, pass_at, rollout
from losses import (answer_token_logps, best_of_group_advantages, grpo_advantages, grpo_loss,
                    kl_penalised_rewards, rloo_advantages, rloo_loss)
from model import load_sft, merged, policy_and_reference, save_checkpoint
from plumbing.distributed import for_training, is_main, shard
from plumbing.flags import ConfigError, LoRAConfig, flag, run_cli
from plumbing.loop import TrainingRun, make_optimizer, optimizer_step, set_lr
from plumbing.run import finish, hooked, start_run


@dataclass
class GRPOConfig(LoRAConfig):
    num_generations: int = flag(8, "G: answers sampled per prompt (the group)", "method",
                                at_least=2)
    beta: float = flag(0.04, "KL penalty toward the SFT reference (0 drops the reference)",
                       "method", at_least=0)
    kl_in: str = flag(None, "where the KL penalty goes: loss (per token, the GRPO paper's) or "
                      "reward (k1 summed over each answer, taken off its reward, as PPO and "
                      "RLOO) (default: reward for --advantage rloo, else loss)", "method",
                      choices=["loss", "reward"])
    kl_estimator: str = flag(None, "the KL estimate in the loss (--kl_in loss): k3 (the paper's; "
                             "on one token its gradient follows KL(pi_ref || pi)), k2 (KL(pi || "
                             "pi_ref), token by token) or k1 (no gradient in expectation) "
                             "(default: k3)", "method", choices=["k1", "k2", "k3"])
    epsilon: float = flag(0.2, "clip range of the ratio pi / pi_old", "method", above=0)
    loss_type: str = flag("grpo", "how per-token terms are averaged", "method",
                          choices=["grpo", "dr_grpo", "dapo"])
    scale_rewards: str = flag(None, "divide advantages by the group's std, the batch's, "
                              "or not at all (Dr. GRPO) (default: group)", "method",
                              choices=["group", "batch", "none"])
    advantage: str = flag("grpo", "grpo: (r - group mean) / std; rloo: r - the others' mean; "
                          "best: 1 for each group's best answer (rejection sampling)", "method",
                          choices=["grpo", "rloo", "best"])
    reward: str = flag("rule", "rule: 1 if the answer is right, else 0; judge: the true reward "
                       "that labels DPO's pairs", "method", choices=["rule", "judge"])
    num_iterations: int = flag(1, "updates per batch of samples (mu in the paper)", "method",
                               at_least=1)
    mask_truncated: bool = flag(True, "leave answers cut off at max_new_tokens out of the "
                                      "loss", "method")
    temperature: float = flag(1.0, "sampling temperature (log-probs use it too)", "sampling",
                              above=0)
    max_new_tokens: int = flag(MAX_NEW_TOKENS, "longest answer sampled", "sampling",
                               at_least=1)
    num_prompts: int = flag(5000, "training prompts (the verifiable tasks' training split)",
                            "data", at_least=1)
    prompts_per_step: int = flag(16, "prompts per step; a step trains on prompts x G answers",
                                 at_least=1)
    learning_rate: float = flag(1e-4, "peak learning rate (AdamW)", above=0)
    max_steps: int = flag(200, "sampling steps", at_least=1)
    warmup_steps: int = flag(5, "linear warmup steps", at_least=0)

    DEFAULTS_FROM = ("advantage", "kl_in", "beta")     # the defaults below depend on them

    def __post_init__(self):
        """A flag the chosen mode would ignore is refused, whatever its value; left unset, it
        stays None where nothing reads it."""
        if self.kl_in is None:
            self.kl_in = "reward" if self.advantage == "rloo" else "loss"
        super().__post_init__()
        if self.advantage == "rloo" and self.kl_in == "loss":
            raise ConfigError("--advantage rloo puts the KL in the reward, as RLOO does; "
                              "--kl_in loss is GRPO's")
        if self.advantage == "rloo" and (self.loss_type != "grpo" or self.scale_rewards):
            raise ConfigError("--advantage rloo has a loss of its own (whole answers, no "
                              "scaling): --loss_type and --scale_rewards are GRPO's; drop them")
        if self.advantage == "best" and self.scale_rewards:
            raise ConfigError("--advantage best gives each group's best answer 1 and the rest "
                              "0: there is nothing to scale; drop --scale_rewards")
        if self.kl_estimator and (self.kl_in == "reward" or self.beta == 0):
            raise ConfigError("--kl_estimator is the KL term's in the loss; " + (
                "with --beta 0 there is none" if self.beta == 0 else
                "with --kl_in reward the KL is k1 summed over each answer") + ": drop it")
        if self.advantage == "grpo":
            self.scale_rewards = self.scale_rewards or "group"
        if self.kl_in == "loss" and self.beta > 0:
            self.kl_estimator = self.kl_estimator or "k3"


SMOKE = dict(num_generations=4, prompts_per_step=4, max_steps=4, num_prompts=64,
             eval_prompts=16, max_new_tokens=16)


REWARDS = {"rule": lambda prompt, answer: float(is_correct(prompt, answer)),  # 1 if right
           "judge": reward}                       # the toy world's true reward (data/world.py)


def penalised(cfg, batch, logps, ref_logps) -> torch.Tensor:
    """The rewards step 3 reads: with --kl_in reward, r - beta KL per answer, k1 summed over
    all of its tokens (losses.kl_penalised_rewards): an answer --mask_truncated leaves out of
    the loss still pays its KL. logps, ref_logps: (N, T) on batch["mask"]; -> (N,)."""
    rewards = batch["rewards"].to(logps.device)                                  # (N,)
    if cfg.kl_in == "reward" and ref_logps is not None:
        rewards = kl_penalised_rewards(rewards, logps, ref_logps, batch["mask"], cfg.beta)
    return rewards


def advantages_of(cfg, rewards, rng) -> torch.Tensor:
    """Step 3 by --advantage, each in losses.py: GRPO's group-normalised reward, RLOO's leave-
    one-out, or rejection sampling's 1 for each group's best answer: (N,) -> (N,)."""
    if cfg.advantage == "rloo":
        return rloo_advantages(rewards, cfg.num_generations)
    if cfg.advantage == "best":
        return best_of_group_advantages(rewards, cfg.num_generations, rng)
    return grpo_advantages(rewards, cfg.num_generations, cfg.scale_rewards)


def sample_and_score(policy, prompts, cfg, rng, device) -> dict:
    """Steps 1 and 2: G answers per prompt (evaluation.rollout), their rewards, and the loss's
    mask: every answer's tokens ("mask"), or with --mask_truncated, the answers cut off at
    max_new_tokens left out ("loss_mask")."""
    batch = rollout(policy, prompts, num_samples=cfg.num_generations,
                    max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                    generator=rng, device=device)
    batch["rewards"] = torch.tensor([REWARDS[cfg.reward](p, a) for p, a in
                                     zip(batch["prompts"], batch["texts"])])    # (N,)
    batch["loss_mask"] = batch["mask"] * batch["finished"].to(device)[:, None] \
        if cfg.mask_truncated else batch["mask"]
    return batch


def policy_loss(cfg, logps, old_logps, ref_logps, advantages, mask, loss_fn=None):
    """Step 4 by method: RLOO's loss on whole answers, or GRPO's per-token loss with the KL term
    in it (--kl_in loss) or without (it is in the reward). loss_fn, if given, stands in for the
    losses.py function (the same signature)."""
    if cfg.advantage == "rloo":
        return (loss_fn or rloo_loss)(logps, old_logps, advantages, mask, epsilon=cfg.epsilon)
    return (loss_fn or grpo_loss)(
        logps, old_logps, ref_logps if cfg.kl_in == "loss" else None, advantages, mask,
        epsilon=cfg.epsilon, beta=cfg.beta, loss_type=cfg.loss_type,
        max_completion_length=cfg.max_new_tokens,
        kl_estimator=cfg.kl_estimator or "k3")          # (unused without a KL term in the loss)


def train(cfg, policy, ref_model, device, loss_fn=None):
    """The training loop. loss_fn, if given, stands in for losses.grpo_loss (rloo_loss with
    --advantage rloo), with the same signature."""
    prompts = [r["prompt"] for r in rl_rows(cfg.num_prompts, seed=cfg.seed + 200)]
    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(policy, cfg.compile)  # several processes: each samples its own groups
    rng = torch.Generator().manual_seed(cfg.seed)
    with TrainingRun("grpo", cfg, policy, opt, rng, cfg.max_steps, log_every=10,
                     show=("reward", "kl"), path=(policy, ref_model)) as run:
        for step in range(run.start, cfg.max_steps):
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            idx = shard(torch.randint(len(prompts), (cfg.prompts_per_step,), generator=rng).tolist())
            batch = sample_and_score(policy, [prompts[i] for i in idx], cfg, rng, device)
            inputs, targets, mask = batch["inputs"], batch["targets"], batch["mask"]
            # log-probs at the sampling temperature on every answer's tokens: (N, T), 0 off them
            with torch.no_grad():
                ref_logps = None if cfg.beta == 0 else \
                    answer_token_logps(ref_model(inputs), targets, mask, cfg.temperature)
            for iteration in range(cfg.num_iterations):
                logps = answer_token_logps(net(inputs), targets, mask, cfg.temperature)
                if iteration == 0:   # the policy has not moved yet: this pass's log-probs,
                    old_logps = logps.detach()          # frozen, are the sampling policy's
                    advantages = advantages_of(cfg, penalised(cfg, batch, old_logps, ref_logps),
                                               rng)                              # (N,)
                loss, stats = policy_loss(cfg, logps, old_logps, ref_logps, advantages,
                                          batch["loss_mask"], loss_fn)
                loss.backward()
                optimizer_step(policy, opt, cfg.grad_clip)
            if cfg.kl_in == "reward":                        # per token, as TRL's RLOO logs
                stats["kl"] = 0.0 if ref_logps is None else \
                    ((old_logps - ref_logps) * mask).sum() / mask.sum().clamp_min(1)
            run.log(step, {"loss": loss.detach(), "lr": lr, **stats,
                           **group_metrics(batch, cfg.num_generations)})


def group_metrics(batch, G: int) -> dict:
    """What a GRPO step's samples were like (TRL's names)."""
    group_std = batch["rewards"].view(-1, G).std(dim=1)
    return {"reward": batch["rewards"].mean(), "reward_std": group_std.mean(),
            "frac_reward_zero_std": (group_std == 0).float().mean(),
            "completions/mean_length": batch["lengths"].mean(),
            "completions/truncated": 1 - batch["finished"].mean()}


def main(cfg: GRPOConfig, loss_fn=None) -> dict:
    """Train, save, evaluate; returns the trained model's metrics. loss_fn (notebook 03
    passes its own) replaces losses.grpo_loss, with the same signature."""
    cfg, device, memory_at_start = start_run(cfg, SMOKE, outputs=["grpo.pt"])
    t0 = time.time()
    init = cfg.input_path("init_from")
    policy, ref_model = policy_and_reference(load_sft(init, device, cfg.allow_pretrained),
                                             cfg.lora_rank, cfg.lora_alpha,
                                             cfg.lora_targets.split(","))
    estimator = f" ({cfg.kl_estimator})" if cfg.kl_estimator else ""
    print(f"{cfg.advantage} advantages from {init}: {cfg.prompts_per_step} prompts x "
          f"{cfg.num_generations} answers per step, reward {cfg.reward}, beta {cfg.beta} with "
          f"the KL in the {cfg.kl_in}{estimator}, loss "
          f"{'rloo' if cfg.advantage == 'rloo' else cfg.loss_type}")
    train(cfg, policy, ref_model if cfg.beta > 0 else None, device, loss_fn)
    train_seconds = time.time() - t0
    if not is_main():
        return {}
    save_checkpoint(Path(cfg.out_dir) / "grpo.pt", merged(policy), asdict(cfg), cfg.max_steps,
                    stage="grpo")
    prompts = eval_prompts(cfg.eval_prompts)
    before, after, _ = against_reference(policy, ref_model, prompts, seed=cfg.seed,
                                         samples_path=Path(cfg.out_dir) / "grpo_samples.jsonl")
    G = cfg.num_generations          # pass@G: a right answer among G samples (what GRPO sees)
    before[f"pass@{G}"] = pass_at(ref_model, prompts, G, cfg.seed + 1)
    name = {"grpo": "GRPO", "rloo": "RLOO", "best": "rejection sampling"}[cfg.advantage]
    return finish(cfg.out_dir, "grpo", {"sft": before, "grpo": after},
                  f"\nSFT vs {name} (beta {cfg.beta}, the KL in the {cfg.kl_in}"
                  f"{hooked(loss_fn=loss_fn)}) on {len(prompts)} held-out prompts",
                  train_seconds=train_seconds, device=device, memory_at_start=memory_at_start,
                  also_saved={f"sft_pass@{G}": before[f"pass@{G}"]})


if __name__ == "__main__":
    run_cli(main, GRPOConfig, __doc__)
