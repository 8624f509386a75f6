"""Classic RLHF, stage 2: PPO with a critic against the learned reward model.

    python train_ppo.py                        # after train_rm.py: kl_coef 0.05, 4 PPO epochs
    python train_ppo.py --kl_coef 0 --max_steps 400 --out_dir out/ppo_kl0 --init_from out/sft.pt --reward_model out/rm.pt
    python train_ppo.py --num_ppo_epochs 1 --num_mini_batches 1 --out_dir out/ppo_1epoch --init_from out/sft.pt --reward_model out/rm.pt
    python train_ppo.py --reward judge --out_dir out/ppo_judge --init_from out/sft.pt   # the true reward

InstructGPT's step 3 (Ouyang et al. 2022, Sec. 3.5; Ziegler et al. 2019; the
implementation of TRL's PPOTrainer and of "The N implementation details of RLHF
with PPO", Huang et al. 2022), with four models in memory: the policy and the
critic being trained, the frozen SFT reference and the frozen reward model.
1. Rollout: the policy answers a batch of training prompts (KV-cache sampler).
2. Score: the reward model reads each prompt + answer (r, normalised by
   train_rm.py to mean 0 and std 1 on SFT answers); an answer that never reaches
   its end token loses --missing_eos_penalty.
3. Per-token rewards: -kl_coef (log pi - log pi_ref) on every answer token, plus r
   on the last one (losses.ppo_rewards), so the return is r - kl_coef KL.
4. Advantages: the critic's values V_t, then GAE with gamma 1, lambda 0.95
   (losses.gae), whitened over the batch's tokens (losses.whiten); returns = A + V.
5. Update: --num_ppo_epochs passes over the batch in --num_mini_batches shuffled
   minibatches, each a step on the clipped policy loss + vf_coef x the clipped value
   loss (losses.ppo_loss), the ratio taken against the log-probs of step 1.

Departures, and why:
- The reward model is this project's (train_rm.py), learned from noisy labels of
  the true reward; the evaluation judges with the true reward, so a gap between
  the two (reward hacking) shows. --reward judge scores with the true reward itself
  (three models: no reward model), so that PPO's distance from the optimum splits into
  what the reward model costs and what the optimisation does.
- The critic is a second GPT with a scalar head, initialised from the reward
  model as in the N-details paper (with --reward judge, from the SFT model and a new
  head); policy and critic share one AdamW optimizer and one gradient clip (TRL's
  PolicyAndValueWrapper).
- Every log-prob pass divides the logits by the sampling temperature, so the
  ratio compares the distribution the answers came from. No entropy bonus, no
  reward whitening, no adaptive KL controller (TRL's defaults).
- Sampling at temperature 1 (TRL: 0.7), as the evaluation samples; answers that never
  end lose 1.0 (TRL: no penalty unless --missing_eos_penalty is set).
- Each step also logs objective/true_reward, the toy world's reward of the rollouts,
  which PPO never sees: beside objective/scores it shows over-optimisation as it happens.
- InstructGPT's PPO-ptx term (pretraining gradients mixed in) is left out.
"""

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from data.batching import MAX_NEW_TOKENS, prompt_ids
from data.world import eval_prompts, reward, rl_rows
from evaluation import against_reference, rollout, scores_of_answers
from losses import answer_token_logps, gae, ppo_loss, ppo_rewards, whiten
from model import (ScoreModel, load_checkpoint, load_sft, merged, policy_and_reference,
                   save_checkpoint)
from plumbing.distributed import for_training, is_main, shard
from plumbing.flags import LoRAConfig, flag, run_cli
from plumbing.loop import TrainingRun, make_optimizer, optimizer_step, set_lr
from plumbing.run import finish, hooked, start_run


@dataclass
class PPOConfig(LoRAConfig):
    reward_model: str = flag("", "the reward model train_rm.py wrote (default: "
                                 "OUT_DIR/rm.pt)", "model")
    reward: str = flag("model", "what scores the answers: model, the reward model; judge, the "
                       "toy world's true reward in its place", "method", choices=["model", "judge"])
    kl_coef: float = flag(0.05, "per-token KL penalty toward the SFT reference", "method",
                          at_least=0)
    epsilon: float = flag(0.2, "clip range of the ratio pi / pi_old (TRL's cliprange)",
                          "method", above=0)
    value_epsilon: float = flag(0.2, "clip range of the value around the old value (TRL's "
                                "cliprange_value)", "method", above=0)
    vf_coef: float = flag(0.1, "weight of the value loss", "method", at_least=0)
    gamma: float = flag(1.0, "discount", "method", at_least=0)
    lam: float = flag(0.95, "GAE's lambda", "method", at_least=0)
    num_ppo_epochs: int = flag(4, "passes over each batch of rollouts", "method", at_least=1)
    num_mini_batches: int = flag(2, "minibatches per pass (one optimizer step each)", "method",
                                 at_least=1)
    missing_eos_penalty: float = flag(1.0, "subtracted from the score of an answer that never "
                                           "ends", "method", at_least=0)
    temperature: float = flag(1.0, "sampling temperature (log-probs use it too)", "sampling",
                              above=0)
    max_new_tokens: int = flag(MAX_NEW_TOKENS, "longest answer sampled", "sampling",
                               at_least=1)
    num_prompts: int = flag(5000, "training prompts", "data", at_least=1)
    batch_size: int = flag(64, "prompts (one answer each) per rollout batch", at_least=2)
    learning_rate: float = flag(5e-5, "peak learning rate (AdamW), policy and critic",
                                above=0)
    max_steps: int = flag(100, "rollout batches", at_least=1)
    warmup_steps: int = flag(5, "linear warmup steps", at_least=0)

    def inputs(self) -> dict[str, str]:
        return {"init_from": "sft.pt", **({"reward_model": "rm.pt"} if self.reward == "model"
                                          else {})}


SMOKE = dict(batch_size=8, max_steps=4, num_prompts=64, eval_prompts=16, max_new_tokens=16)


class PolicyAndValue(nn.Module):
    """The two trained models as one module (TRL's PolicyAndValueWrapper): one optimizer,
    one gradient clip, one resumable state, and one forward that gives both."""

    def __init__(self, policy, critic):
        super().__init__()
        self.policy, self.critic, self.config = policy, critic, policy.config

    def forward(self, inputs):
        """inputs (N, T) -> logits (N, T, V) and values (N, T)."""
        return self.policy(inputs), self.critic(inputs)


@torch.no_grad()
def score_and_advantages(cfg, batch, policy, ref_model, rm, critic, device, gae_fn=None):
    """Steps 2-4 for a rollout batch: adds old_logps, ref_logps, old_values (N, T), scores
    (N,), rewards, advantages, returns (N, T) to it, and returns the step's objective/
    metrics. rm None: the true reward scores the answers (--reward judge)."""
    inputs, targets, mask = batch["inputs"], batch["targets"], batch["mask"]
    # log-probs of the sampled tokens at the sampling temperature, (N, T), 0 off the mask
    batch["old_logps"] = answer_token_logps(policy(inputs), targets, mask, cfg.temperature)
    ref_logps = answer_token_logps(ref_model(inputs), targets, mask, cfg.temperature)
    batch["old_values"] = critic(inputs).float() * mask                      # V_t, (N, T)
    finished = batch["finished"].to(device)
    true = torch.tensor([reward(p, t) for p, t in zip(batch["prompts"], batch["texts"])],
                        device=device)                                   # the toy world's
    scores = true if rm is None else scores_of_answers(rm, batch["prompt_ids"], batch["rows"])
    scores = scores - cfg.missing_eos_penalty * (1 - finished)             # step 2
    rewards = ppo_rewards(scores, batch["old_logps"], ref_logps, mask, cfg.kl_coef)  # step 3
    advantages, batch["returns"] = (gae_fn or gae)(rewards, batch["old_values"], mask,
                                                   gamma=cfg.gamma, lam=cfg.lam)   # step 4
    batch["advantages"] = whiten(advantages, mask)
    kl = ((batch["old_logps"] - ref_logps) * mask).sum(1)                  # (N,) per answer
    non_score = -cfg.kl_coef * kl
    return {"objective/kl": kl.mean(), "objective/entropy": -batch["old_logps"].sum(1).mean(),
            "objective/scores": scores.mean(), "objective/non_score_reward": non_score.mean(),
            "objective/rlhf_reward": (scores + non_score).mean(),
            "objective/true_reward": true.mean(),
            "completions/mean_length": batch["lengths"].mean(),
            "completions/truncated": 1 - batch["finished"].mean()}


def train(cfg, policy, ref_model, rm, critic, device, loss_fn=None, gae_fn=None):
    """The training loop. loss_fn and gae_fn, if given, stand in for losses.ppo_loss and
    losses.gae (same signatures)."""
    prompts = [r["prompt"] for r in rl_rows(cfg.num_prompts, seed=cfg.seed + 200)]
    model = PolicyAndValue(policy, critic)
    opt = make_optimizer(model, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(model, cfg.compile)
    rng = torch.Generator().manual_seed(cfg.seed)
    with TrainingRun("ppo", cfg, model, opt, rng, cfg.max_steps, log_every=10,
                     show=("objective/scores", "objective/kl"),
                     path=(policy, ref_model, *([rm] if rm is not None else []))) as run:
        for step in range(run.start, cfg.max_steps):
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            idx = shard(torch.randint(len(prompts), (cfg.batch_size,), generator=rng).tolist())
            batch = rollout(policy, [prompts[i] for i in idx], num_samples=1,      # step 1
                            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            generator=rng, device=device)
            objective = score_and_advantages(cfg, batch, policy, ref_model, rm, critic, device,
                                             gae_fn)                          # steps 2-4
            updates = []
            for _ in range(cfg.num_ppo_epochs):                               # step 5
                order = torch.randperm(len(idx), generator=rng).to(device)
                for mb in order.chunk(cfg.num_mini_batches):
                    logits, values = net(batch["inputs"][mb])                  # (n, T, V), (n, T)
                    mask = batch["mask"][mb]
                    logps = answer_token_logps(logits, batch["targets"][mb], mask,
                                               cfg.temperature)
                    loss, stats = (loss_fn or ppo_loss)(
                        logps, batch["old_logps"][mb], batch["advantages"][mb],
                        values.float() * mask, batch["old_values"][mb], batch["returns"][mb],
                        mask, epsilon=cfg.epsilon, value_epsilon=cfg.value_epsilon,
                        vf_coef=cfg.vf_coef)
                    loss.backward()
                    optimizer_step(model, opt, cfg.grad_clip)
                    updates.append({"loss": loss.detach(), **stats})
            run.log(step, {**{k: torch.stack([u[k] for u in updates]).mean() for k in updates[0]},
                           "lr": lr, **objective})


def load_models(cfg, device):
    """The models: policy and reference (SFT), the frozen reward model, the critic (a trainable
    copy of the reward model). With --reward judge, no reward model (None) and the critic is
    the SFT model with a new scalar head."""
    init = cfg.input_path("init_from")
    sft = load_sft(init, device, cfg.allow_pretrained)
    if cfg.reward == "judge":    # no reward model; the critic: a copy of the SFT model (made
        rm, critic, scorer = None, ScoreModel.from_gpt(sft), "the true reward"   # before LoRA)
        nn.init.zeros_(critic.head.weight)                      # and a new head, values 0
    policy, ref_model = policy_and_reference(sft, cfg.lora_rank, cfg.lora_alpha,
                                             cfg.lora_targets.split(","))
    if cfg.reward == "model":
        rm_path = cfg.input_path("reward_model")
        if not rm_path.exists():
            raise ValueError(f"{rm_path}: no reward model; train_rm.py writes it (or pass "
                             "--reward_model, or --reward judge)")
        rm, _ = load_checkpoint(rm_path, device, cls=ScoreModel)
        critic = copy.deepcopy(rm)                  # trained from the reward model's weights
        rm.eval().requires_grad_(False)
        scorer = f"the reward model {rm_path}"
    models = {"policy": policy, "reference": ref_model, "reward model": rm, "critic": critic}
    held = {name: m for name, m in models.items() if m is not None}
    print(f"PPO from {init} with {scorer}. {len(held)} models in memory (policy and critic "
          "trained): " + ", ".join(f"{name} {m.num_params() / 1e6:.3f}M"
                                   for name, m in held.items()) + " parameters")
    return policy, ref_model, rm, critic


def main(cfg: PPOConfig, loss_fn=None, gae_fn=None) -> dict:
    """Train, save, evaluate; returns the trained policy's metrics. loss_fn and gae_fn (the
    notebook passes its own) replace losses.ppo_loss and losses.gae."""
    cfg, device, memory_at_start = start_run(cfg, SMOKE, outputs=["ppo.pt"])
    t0 = time.time()
    policy, ref_model, rm, critic = load_models(cfg, device)
    train(cfg, policy, ref_model, rm, critic, device, loss_fn, gae_fn)
    train_seconds = time.time() - t0
    if not is_main():
        return {}
    save_checkpoint(Path(cfg.out_dir) / "ppo.pt", merged(policy), asdict(cfg), cfg.max_steps,
                    stage="ppo")
    prompts = eval_prompts(cfg.eval_prompts)
    before, after, (sft_tokens, tokens) = against_reference(
        policy, ref_model, prompts, seed=cfg.seed,
        samples_path=Path(cfg.out_dir) / "ppo_samples.jsonl")
    if rm is not None:                                       # the reward model's view of them
        ids = [prompt_ids(p) for p in prompts]
        for metrics, answers in ((before, sft_tokens), (after, tokens)):
            metrics["rm_score"] = scores_of_answers(rm, ids, answers).mean().item()
    return finish(cfg.out_dir, "ppo", {"sft": before, "ppo": after},
                  f"\nSFT vs PPO on the {'true reward' if rm is None else 'reward model'} "
                  f"(kl_coef {cfg.kl_coef}{hooked(loss_fn=loss_fn, gae_fn=gae_fn)}) on "
                  f"{len(prompts)} held-out prompts",
                  train_seconds=train_seconds, device=device, memory_at_start=memory_at_start)


if __name__ == "__main__":
    run_cli(main, PPOConfig, __doc__)
