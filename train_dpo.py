"""Preference optimisation: DPO, IPO, SimPO and KTO from the SFT model, ORPO from the
pretrained one.

    python train_dpo.py                       # DPO, beta 0.1, on-policy pairs
    python train_dpo.py --loss ipo            # IPO (--beta is the paper's tau)
    python train_dpo.py --loss simpo          # SimPO: no reference model
    python train_dpo.py --loss kto            # KTO: answers labelled good or bad, no pairs
    python train_dpo.py --loss orpo           # ORPO: from pretrain.pt, no SFT stage, no reference
    python train_dpo.py --rounds 3 --out_dir out/iterative --init_from out/sft.pt   # online

DPO (Rafailov et al. 2023) turns max E[r] - beta KL(pi || pi_ref) into a loss on pairs (its
derivation beside losses.dpo_loss). One step (train): a batch of pairs, one forward over chosen
and rejected answers (logps_of), the objective (preference_loss), the optimizer step.

Where this departs from the paper, and why:
- The loss adds the chosen answer's length-normalised NLL (--rpo_alpha 1), as Iterative RPO
  does (Pang et al. 2024, Eq. 1). Without it (--rpo_alpha 0, the paper's loss) DPO's pull on
  the rejected answers drags the chosen ones down too (-2.0 to -16.7 nats in 150 steps).
- Pairs are the SFT model's samples judged by the toy world's true reward, best against
  worst, ties dropped (data/pairs.py), not a fixed dataset; --label_temperature T draws
  labels from Bradley-Terry, P(a beats b) = sigmoid((r_a - r_b) / T), as noisy humans do.
- The frozen reference's log-probs are computed once, before training (exact).
- --rounds R is iterative (online) DPO: R rounds, each on the policy's own judged answers to a
  new 1/R of the prompts (a resumed run builds its round's from the policy it resumes).
- IPO, SimPO and ORPO take per-token mean log-probs (IPO's authors and TRL; --ipo_sum: sums).
  KTO's answers are labelled by a rule on the true reward; w_D n_D = w_U n_U by default.
- ORPO (Hong et al. 2024) replaces SFT + DPO with one stage from OUT_DIR/pretrain.pt, on the
  persona generator's written pairs; the SFT model beside it is only its "before" column.
"""

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from data.batching import chat_batch, encode_rows, in_batches, write_jsonl
from data.pairs import checklist, imbalance, kto_weights, mismatched, preferences, read_preferences
from data.world import eval_prompts, rl_rows
from losses import (AnswerLogps, answer_logps, dpo_loss, ipo_loss, kto_loss,
                    kto_reference_point, nll_loss, orpo_log_odds, orpo_loss, simpo_loss)
from model import merged, save_checkpoint
from plumbing.distributed import all_gather, for_training, is_main, shard
from plumbing.evaluation import against_reference, finish, implicit_reward_accuracy, kept_answers
from plumbing.flags import LoRAConfig, flag, run_cli
from plumbing.loop import TrainingRun, make_optimizer, optimizer_step, set_lr
from plumbing.start import load_policy_and_reference, start_run


@dataclass(frozen=True)
class Objective:               # what tells one --loss from another, beside preference_loss
    loss: Callable        # its function in losses.py
    reference: bool       # reads the reference's log-probs
    unpaired: bool        # learns from labelled answers (KTO), not pairs
    start: str            # the checkpoint in OUT_DIR that the policy starts from
    knob: str             # what --beta is called in its paper
    usual: tuple          # the papers' range of --beta (a warning outside it)
    defaults: dict        # of the flags left unset


# IPO's tau acts on per-token means: 0.1 asks for a 1/(2 tau) = 5-nat gap per token (KL to the
# reference reached 33), 0.5 for one nat. ORPO does SFT's work too: SFT's learning rate, SFT's
# steps + DPO's, written pairs for 20000 prompts (SFT sees 19,200 rows; nothing is sampled).
FROM_SFT = dict(pair_source="onpolicy", num_prompts=2000, learning_rate=2e-4, max_steps=150)
OBJECTIVES = {
    "dpo": Objective(dpo_loss, True, False, "sft.pt", "beta", (0.01, 1), dict(FROM_SFT, beta=0.1)),
    "ipo": Objective(ipo_loss, True, False, "sft.pt", "tau", (0.01, 1), dict(FROM_SFT, beta=0.5)),
    "simpo": Objective(simpo_loss, False, False, "sft.pt", "beta", (0.5, 10),
                       dict(FROM_SFT, beta=2.0)),
    "kto": Objective(kto_loss, True, True, "sft.pt", "beta", (0.01, 1), dict(FROM_SFT, beta=0.1)),
    "orpo": Objective(orpo_loss, False, False, "pretrain.pt", "lambda", (0.01, 1), dict(
        beta=0.1, pair_source="offpolicy", num_prompts=20000, learning_rate=1e-3, max_steps=750)),
}


@dataclass
class DPOConfig(LoRAConfig):
    loss: str = flag("dpo", "which objective", "method", choices=list(OBJECTIVES))
    beta: float = flag(None, "DPO's, SimPO's, KTO's beta, IPO's tau, ORPO's lambda (default: "
                             "2.0 simpo, 0.5 ipo, else 0.1)", "method", above=0)
    gamma: float = flag(0.5, "SimPO target margin", "method", at_least=0)
    label_smoothing: float = flag(0.0, "conservative DPO: label-flip rate", "method", at_least=0)
    ipo_sum: bool = flag(False, "IPO on summed, not per-token mean, log-probs", "method")
    rpo_alpha: float = flag(1.0, "weight of the chosen (KTO: desirable) answers' NLL; 0: the "
                            "paper's loss", "method", at_least=0)
    desirable_weight: float = flag(None, "KTO's w_D (default: n_U / n_D)", "method", above=0)
    undesirable_weight: float = flag(1.0, "KTO's w_U", "method", above=0)
    data: str = flag("", "JSONL of {prompt, chosen, rejected} pairs, or for KTO also "
                         "{prompt, completion, label} rows (default: build them)", "data")
    pair_source: str = flag(None, "onpolicy: the SFT model's answers; offpolicy: two personas' "
                            "(default: offpolicy for orpo)", "data",
                            choices=["onpolicy", "offpolicy"])
    num_prompts: int = flag(None, "prompts to build pairs from (default: 20000 orpo, else 2000)",
                            "data", at_least=1)
    samples_per_prompt: int = flag(4, "on-policy samples per prompt", "data", at_least=2)
    label_temperature: float = flag(0.0, "> 0: Bradley-Terry labels", "data", at_least=0)
    length_bonus: float = flag(0.0, "a labeller biased to length: + this a word (0.03: a chatty "
                               "right answer beats a concise one)", "data", at_least=0)
    # 0.9: a concise (1.0) or friendly (0.97) right answer; chatty right ones score 0.77
    desirable_reward: float = flag(0.9, "KTO: desirable at a true reward of this or more", "data")
    desirable_ratio: float = flag(0.0, "KTO: drop desirable rows to n_D / n_U <= this (0.111: "
                                  "one good for nine bad; 0: keep all)", "data", at_least=0)
    # 2e-4: at 1e-4 some seeds' samples often began like a rejected answer ("Sorry", "Hmm")
    learning_rate: float = flag(None, "peak learning rate (default: 1e-3 orpo, else 2e-4)", above=0)
    batch_size: int = flag(32, "pairs (KTO: rows) per step", at_least=1)
    max_steps: int = flag(None, "optimizer steps (default: 750 orpo, else 150)", at_least=1)
    warmup_steps: int = flag(10, "linear warmup steps", at_least=0)
    rounds: int = flag(1, "iterative DPO: R rounds, each on pairs from the policy's own answers "
                          "(1: offline, the SFT model's)", "data", at_least=1)

    DEFAULTS_FROM = ("loss",)     # the flags left unset take the defaults of their --loss

    def inputs(self) -> dict[str, str]:
        return {"init_from": OBJECTIVES[self.loss].start}

    def __post_init__(self):
        super().__post_init__()
        for name, value in OBJECTIVES[self.loss].defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.label_smoothing >= 0.5:
            raise ValueError(f"--label_smoothing must be < 0.5, got {self.label_smoothing}")


# Smoke pairs are written ones: an untrained smoke model's samples are too long byte soup.
SMOKE = dict(num_prompts=64, max_steps=10, batch_size=8, eval_prompts=16, pair_source="offpolicy")


# ------------------------------------------------------------------ the data

def prepare(cfg, sampler, ref_model, init, device, round_=0):
    """(encoded, ref_logps, weights) of a run or of one of --rounds: the pairs (KTO: labelled
    answers) from --data, or sampler's answers judged by the true reward (data/pairs.py; written
    to OUT_DIR/pairs.jsonl), checked (data.pairs.checklist), as token ids; the frozen reference's
    log-probs of each, once (None without a reference); KTO's class weights (or None)."""
    o, n = OBJECTIVES[cfg.loss], cfg.num_prompts // cfg.rounds       # prompts of this round
    if cfg.data:
        rows = read_preferences(cfg.data, o.unpaired)
    else:         # the sampler's answers (round 0: the SFT model's, kept beside it), judged
        prompts = [r["prompt"] for r in rl_rows(n, seed=cfg.seed + 100 + round_)]
        answers = None if cfg.pair_source == "offpolicy" else kept_answers(
            sampler, prompts, num_samples=cfg.samples_per_prompt, seed=cfg.seed + round_,
            beside=None if round_ else init)
        rows = preferences(prompts, answers, unpaired=o.unpaired, seed=cfg.seed,
                           desirable_reward=cfg.desirable_reward, length_bonus=cfg.length_bonus,
                           label_temperature=cfg.label_temperature)
        write_jsonl(Path(cfg.out_dir) / (("kto_rows" if o.unpaired else "pairs") + (
            f"_round{round_}" if cfg.rounds > 1 else "") + ".jsonl"), rows)   # to read, reuse
    rows = checklist(rows, steps=cfg.max_steps, batch_size=cfg.batch_size,
                     source=cfg.data or f"{cfg.loss} data")
    if o.unpaired:
        rows = imbalance(rows, cfg.desirable_ratio, cfg.seed)
    encoded = encode_rows(rows, ref_model.config.block_size, cfg.data or f"{cfg.loss} data")
    weights = kto_weights([r[2] for r in encoded], cfg.desirable_weight,
                          cfg.undesirable_weight) if o.unpaired else None
    with torch.no_grad():
        ref_logps = in_batches(lambda b: logps_of(ref_model, b, device), encoded,
                               batch_size=128) if o.reference else None
    print(f"{cfg.loss} on {len(encoded)} {'rows' if o.unpaired else 'pairs'}, {o.knob} "
          f"{cfg.beta}, learning rate {cfg.learning_rate}, {cfg.max_steps} steps")
    return encoded, ref_logps, weights


# ------------------------------------------------------------------ one step

def logps_of(model, batch, device) -> AnswerLogps:
    """log pi of the batch's answers in one forward. Pairs (prompt, chosen, rejected) go in as
    2B rows, the chosen answers then the rejected, and come back as (B, 2); answers (prompt,
    completion[, label]) as (B,)."""
    prompts, answers = [b[0] for b in batch], [b[1] for b in batch]
    paired = len(batch[0]) == 3 and isinstance(batch[0][2], list)
    if paired:
        prompts, answers = prompts * 2, answers + [b[2] for b in batch]
    inputs, targets, mask = chat_batch(prompts, answers, device)
    logps = answer_logps(model(inputs), targets, mask)                    # (N,)
    return logps.as_pairs() if paired else logps


def preference_loss(cfg, policy: AnswerLogps, ref: AnswerLogps | None, loss_fn=None, **kto):
    """The one place the objective depends on --loss: (per-example losses (B,), chosen rewards,
    rejected rewards), each objective fed the log-probs it takes (sums; per-token means for
    SimPO, ORPO and by default IPO). For KTO (kto: desirable, kl, weights) the rewards are its
    desirable and its undesirable rows'. loss_fn, if given, stands in for the losses.py
    function (same arguments, hyperparameters by keyword)."""
    fn = loss_fn or OBJECTIVES[cfg.loss].loss
    if cfg.loss == "kto":
        d, (w_d, w_u) = kto["desirable"], kto["weights"]
        losses, rewards = fn(policy.total, ref.total, d, kto["kl"], beta=cfg.beta,
                             desirable_weight=w_d, undesirable_weight=w_u)
        return losses, rewards[d], rewards[~d]
    c, r = policy.chosen, policy.rejected
    if cfg.loss == "dpo":
        return fn(c.total, r.total, ref.chosen.total, ref.rejected.total, beta=cfg.beta,
                  label_smoothing=cfg.label_smoothing)
    if cfg.loss == "ipo":
        k = "total" if cfg.ipo_sum else "mean"
        return fn(getattr(c, k), getattr(r, k), getattr(ref.chosen, k), getattr(ref.rejected, k),
                  beta=cfg.beta)
    if cfg.loss == "simpo":
        return fn(c.mean, r.mean, beta=cfg.beta, gamma=cfg.gamma)
    return fn(c.mean, r.mean, beta=cfg.beta)                              # orpo


def kto_inputs(net, ref_model, batch, weights, device) -> dict:
    """What KTO's loss takes besides log-probs: the rows' labels (B,) bool, its class weights,
    and z0, the log-ratio of mismatched (prompt, completion) pairs, each completion under the
    next row's prompt (as TRL does), over every process."""
    with torch.no_grad():
        policy_kl, ref_kl = (logps_of(m, mismatched(batch), device).total for m in (net, ref_model))
    return dict(desirable=torch.tensor([b[2] for b in batch], device=device), weights=weights,
                kl=kto_reference_point(all_gather(policy_kl), all_gather(ref_kl)))


def train(cfg, policy, ref_model, init, device, loss_fn=None):
    """The training loop: its data from prepare(), anew as each of --rounds begins."""
    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(policy, cfg.compile)
    rng, per_round = torch.Generator().manual_seed(cfg.seed), -(-cfg.max_steps // cfg.rounds)
    with TrainingRun(cfg.loss, cfg, policy, opt, rng, cfg.max_steps, log_every=25,
                     show=("loss", "rewards/chosen"), path=(policy, ref_model)) as run:
        for step in range(run.start, cfg.max_steps):
            if step == run.start or step % per_round == 0:      # round 0: the SFT model's pairs
                r = step // per_round
                encoded, ref_logps, weights = prepare(cfg, policy if r else ref_model, ref_model,
                                                      init, device, r)
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            idx = shard(torch.randint(len(encoded), (cfg.batch_size,), generator=rng))
            batch = [encoded[i] for i in idx.tolist()]
            policy_logps = logps_of(net, batch, device)             # pairs (B, 2), KTO (B,)
            ref = None if ref_logps is None else ref_logps.select(idx)
            kto = {} if weights is None else kto_inputs(net, ref_model, batch, weights, device)
            losses, chosen_rewards, rejected_rewards = preference_loss(cfg, policy_logps, ref,
                                                                       loss_fn, **kto)
            good = policy_logps.mean[kto["desirable"]] if kto else policy_logps.chosen.mean
            nll = nll_loss(good).sum() / len(batch) if kto else nll_loss(good).mean()
            loss = losses.mean() + cfg.rpo_alpha * nll          # RPO (Pang et al. 2024, Eq. 1)
            loss.backward()
            optimizer_step(policy, opt, cfg.grad_clip)
            run.log(step, {"loss": loss.detach(), f"{cfg.loss}_loss": losses.mean().detach(),
                           "nll_loss": nll.detach(), "lr": lr,
                           **dashboard(policy_logps, chosen_rewards, rejected_rewards, kto)})


def dashboard(policy: AnswerLogps, chosen_rewards, rejected_rewards, kto) -> dict:
    """The metrics every DPO user knows (TRL's names), detached; KTO's by kind of row (NaN for
    a kind the batch lacks)."""
    logps = policy.total.detach()
    chosen, rejected = (logps[kto["desirable"]], logps[~kto["desirable"]]) if kto else logps.T
    metrics = {"rewards/chosen": chosen_rewards.mean(), "rewards/rejected": rejected_rewards.mean(),
               "logps/chosen": chosen.mean(), "logps/rejected": rejected.mean()}
    if kto:
        return {"kl": kto["kl"], **metrics}
    metrics["rewards/margins"] = (chosen_rewards - rejected_rewards).mean()
    metrics["rewards/accuracies"] = (chosen_rewards > rejected_rewards).float().mean()
    log_odds = orpo_log_odds(policy.chosen.mean, policy.rejected.mean).detach()  # ORPO's odds
    metrics["log_odds_chosen"] = log_odds.mean()              # ratio, logged for every pair
    metrics["log_odds_ratio"] = torch.nn.functional.logsigmoid(log_odds).mean()   # (TRL's names)
    return metrics


# ------------------------------------------------------------------ main

def main(cfg: DPOConfig, loss_fn=None) -> dict:
    """Train, save, evaluate; returns the aligned model's metrics. loss_fn (the notebooks
    pass their own) replaces the losses.py function of --loss, with the same signature."""
    cfg, device = start_run(cfg, SMOKE, outputs=[f"{cfg.loss}.pt"])
    t0, o = time.time(), OBJECTIVES[cfg.loss]
    policy, ref_model, init = load_policy_and_reference(cfg, device, o.start)
    if not o.usual[0] <= cfg.beta <= o.usual[1]:
        print(f"warning: {o.knob} {cfg.beta} is outside the usual range {o.usual} for {cfg.loss}")
    if o.loss is dpo_loss and cfg.beta != o.defaults["beta"] and not cfg.label_temperature:
        print("note: on best-against-worst labels DPO's optimum is unbounded, so beta acts only "
              "through saturation and barely moves the KL; --label_temperature 0.1 --rpo_alpha 0 "
              "(Bradley-Terry labels, the paper's loss) shows what beta trades")
    train(cfg, policy, ref_model, init, device, loss_fn)
    train_seconds = time.time() - t0
    if not is_main():
        return {}
    save_checkpoint(Path(cfg.out_dir) / f"{cfg.loss}.pt", merged(policy), asdict(cfg),
                    cfg.max_steps, stage=cfg.loss)
    prompts = eval_prompts(cfg.eval_prompts)
    before, after, _ = against_reference(policy, ref_model, prompts, seed=cfg.seed, samples_path=
                                         Path(cfg.out_dir) / f"{cfg.loss}_samples.jsonl")
    as_pairs = replace(cfg, loss="dpo") if o.unpaired else cfg       # KTO's reward is DPO's
    after["implicit_reward_accuracy"] = implicit_reward_accuracy(
        policy, ref_model, prompts, logps_of=logps_of, seed=cfg.seed + 1,
        rewards=lambda p, r: preference_loss(as_pairs, p, r, None if o.unpaired else loss_fn)[1:],
        samples_per_prompt=cfg.samples_per_prompt)
    return finish(cfg.out_dir, cfg.loss, {"sft": before, cfg.loss: after},
                  f"\nSFT vs {cfg.loss} ({o.knob} {cfg.beta}) on {len(prompts)} held-out prompts",
                  train_seconds=train_seconds, device=device)


if __name__ == "__main__":
    run_cli(main, DPOConfig, __doc__)
