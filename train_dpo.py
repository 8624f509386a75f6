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
and rejected answers (logps_of), the objective (preference_loss), the RPO term, the optimizer
step. KTO learns from single labelled answers, so it has a loop of its own (train_kto).

Where this departs from the paper, and why:
- The loss adds the chosen answer's length-normalised NLL (--rpo_alpha 1), as Iterative RPO
  does (Pang et al. 2024, Eq. 1). Without it (--rpo_alpha 0, the paper's loss) DPO's pull on
  the rejected answers drags the chosen ones down too (docs/results.md measures how far).
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

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from data.batching import DataError, chat_batch, encode_rows, in_batches, write_jsonl
from data.pairs import checklist, imbalance, kto_weights, mismatched, preferences, read_preferences
from data.world import eval_prompts, rl_rows
from evaluation import against_reference, implicit_reward_accuracy, kept_answers
from losses import (AnswerLogps, answer_logps, dpo_loss, ipo_loss, kto_loss,
                    kto_reference_point, nll_loss, orpo_log_odds, orpo_loss, simpo_loss)
from model import load_checkpoint, load_sft, merged, policy_and_reference, save_checkpoint
from plumbing.distributed import all_gather, for_training, is_main, shard
from plumbing.flags import ConfigError, LoRAConfig, flag, run_cli
from plumbing.loop import TrainingRun, last_logged, make_optimizer, optimizer_step, set_lr
from plumbing.run import finish, hooked, start_run


@dataclass(frozen=True)
class Objective:          # everything that tells one --loss from another: one entry registers one
    loss: Callable        # its function in losses.py: (chosen, rejected[, ref chosen, ref
                          # rejected], **kwargs) -> (losses (B,), chosen rewards, rejected rewards)
    reference: bool       # takes the reference's log-probs (after the policy's)
    start: str            # the checkpoint in OUT_DIR that the policy starts from
    knob: str             # what --beta is called in its paper
    usual: tuple          # the papers' range of --beta (a warning outside it)
    defaults: dict        # the defaults of the flags that depend on --loss: their one table
    logps: Callable = lambda cfg: "total"         # the log-probs it takes: sums or "mean"s
    kwargs: Callable = lambda cfg: {"beta": cfg.beta}   # its keyword arguments, from the flags


# IPO's tau acts on per-token means: 0.5 asks for a 1/(2 tau) = one-nat gap per token (0.1
# would ask for five). ORPO does SFT's work too: SFT's learning rate, SFT's steps + DPO's,
# written pairs for as many prompts as SFT sees rows (nothing is sampled).
FROM_SFT = dict(pair_source="onpolicy", num_prompts=2000, learning_rate=2e-4, max_steps=150)
OBJECTIVES = {
    "dpo": Objective(loss=dpo_loss, reference=True, start="sft.pt", knob="beta",
                     usual=(0.01, 1), defaults=dict(FROM_SFT, beta=0.1),
                     kwargs=lambda cfg: {"beta": cfg.beta,
                                         "label_smoothing": cfg.label_smoothing}),
    "ipo": Objective(loss=ipo_loss, reference=True, start="sft.pt", knob="tau",
                     usual=(0.01, 1), defaults=dict(FROM_SFT, beta=0.5),
                     logps=lambda cfg: "total" if cfg.ipo_sum else "mean"),
    "simpo": Objective(loss=simpo_loss, reference=False, start="sft.pt", knob="beta",
                       usual=(0.5, 10), defaults=dict(FROM_SFT, beta=2.0),
                       logps=lambda cfg: "mean",
                       kwargs=lambda cfg: {"beta": cfg.beta, "gamma": cfg.gamma}),
    # KTO learns from single labelled answers: train_kto, not preference_loss, calls its loss
    "kto": Objective(loss=kto_loss, reference=True, start="sft.pt", knob="beta",
                     usual=(0.01, 1), defaults=dict(FROM_SFT, beta=0.1)),
    "orpo": Objective(loss=orpo_loss, reference=False, start="pretrain.pt", knob="lambda",
                      usual=(0.01, 1), defaults=dict(pair_source="offpolicy", num_prompts=20000,
                                                     learning_rate=1e-3, max_steps=750,
                                                     beta=0.1), logps=lambda cfg: "mean"),
}


def by_loss(name: str) -> str:
    """A --help line's default of a flag set per --loss, read from OBJECTIVES."""
    return " (default: " + ", ".join(f"{k} {o.defaults[name]}" for k, o in OBJECTIVES.items()) + ")"


@dataclass
class DPOConfig(LoRAConfig):
    loss: str = flag("dpo", "which objective", "method", choices=list(OBJECTIVES))
    beta: float = flag(None, "DPO's, SimPO's, KTO's beta, IPO's tau, ORPO's lambda" +
                       by_loss("beta"), "method", above=0)
    gamma: float = flag(0.5, "SimPO target margin", "method", at_least=0)
    label_smoothing: float = flag(0.0, "conservative DPO: label-flip rate", "method", at_least=0)
    ipo_sum: bool = flag(False, "IPO on summed, not per-token mean, log-probs", "method")
    rpo_alpha: float = flag(1.0, "weight of the chosen (KTO: desirable) answers' NLL; 0: the "
                            "paper's loss", "method", at_least=0)
    desirable_weight: float = flag(None, "KTO's w_D (default: n_U / n_D)", "method", above=0)
    undesirable_weight: float = flag(1.0, "KTO's w_U", "method", above=0)
    data: str = flag("", "JSONL of {prompt, chosen, rejected} pairs, or for KTO also "
                         "{prompt, completion, label} rows (default: build them)", "data")
    pair_source: str = flag(None, "onpolicy: the SFT model's answers; offpolicy: two personas'" +
                            by_loss("pair_source"), "data", choices=["onpolicy", "offpolicy"])
    num_prompts: int = flag(None, "prompts to build pairs from" + by_loss("num_prompts"),
                            "data", at_least=1)
    samples_per_prompt: int = flag(4, "on-policy samples per prompt", "data", at_least=2)
    label_temperature: float = flag(0.0, "> 0: Bradley-Terry labels", "data", at_least=0)
    length_bonus: float = flag(0.0, "a labeller biased to length: + this a word (0.03: a chatty "
                               "right answer beats a concise one)", "data", at_least=0)
    # 0.9: a concise (1.0) or friendly (0.97) right answer; chatty right ones score 0.77
    desirable_reward: float = flag(0.9, "KTO: desirable at a true reward of this or more", "data")
    desirable_ratio: float = flag(0.0, "KTO: drop desirable rows to n_D / n_U <= this (0.111: "
                                  "one good for nine bad; 0: keep all)", "data", at_least=0)
    rounds: int = flag(1, "iterative DPO: R rounds, each on pairs from the policy's own answers "
                          "(1: offline, the SFT model's)", "data", at_least=1)
    # 2e-4, not 1e-4: at the lower rate some seeds' samples often began like a rejected answer
    learning_rate: float = flag(None, "peak learning rate" + by_loss("learning_rate"), above=0)
    batch_size: int = flag(32, "pairs (KTO: rows) per step", at_least=1)
    max_steps: int = flag(None, "optimizer steps" + by_loss("max_steps"), at_least=1)
    warmup_steps: int = flag(10, "linear warmup steps", at_least=0)

    DEFAULTS_FROM = ("loss",)     # the flags left unset take the defaults of their --loss

    def inputs(self) -> dict[str, str]:
        return {"init_from": OBJECTIVES[self.loss].start}

    def __post_init__(self):
        for name, value in OBJECTIVES[self.loss].defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        super().__post_init__()
        if self.label_smoothing >= 0.5:
            raise ConfigError(f"--label_smoothing must be < 0.5, got {self.label_smoothing}")
        if self.rounds > 1 and self.loss == "kto":
            raise ConfigError("--rounds is iterative DPO's; KTO trains on one set of labelled "
                              "answers")
        for n, what in ((self.num_prompts, "--num_prompts"), (self.max_steps, "--max_steps")):
            if self.rounds > n:
                raise ConfigError(f"--rounds {self.rounds} is more rounds than {what} {n}: each "
                                  f"round needs prompts and steps of its own")


# Smoke pairs are written ones: an untrained smoke model's samples are too long byte soup.
SMOKE = dict(num_prompts=64, max_steps=10, batch_size=8, eval_prompts=16, pair_source="offpolicy")


# ------------------------------------------------------------------ the data

def prepare(cfg, policy, ref_model, sft_path, device, round_=0):
    """(rows as token ids, the frozen reference's log-probs of each or None, the seconds spent
    building the rows) of a run or of one of --rounds: the pairs (KTO: labelled answers) from
    --data, or answers judged by the true reward (data/pairs.py; written to
    OUT_DIR/pairs.jsonl), checked (data.pairs.checklist). The answers are the SFT model's in
    round 0 (sampled once, kept beside its checkpoint for every run from it), the current
    policy's after."""
    t0, unpaired, n = time.time(), cfg.loss == "kto", cfg.num_prompts // cfg.rounds
    if cfg.data:
        rows = read_preferences(cfg.data, unpaired)
    else:
        prompts = [r["prompt"] for r in rl_rows(n, seed=cfg.seed + 100 + round_)]
        answers = None                      # off-policy: the persona generator writes both
        if cfg.pair_source == "onpolicy":   # the SFT model (SimPO and ORPO hold none: read it)
            sampler = policy if round_ else ref_model or load_sft(sft_path, device)
            answers = kept_answers(sampler, prompts, num_samples=cfg.samples_per_prompt,
                                   seed=cfg.seed + round_, beside=None if round_ else sft_path)
        rows = preferences(prompts, answers, unpaired=unpaired, seed=cfg.seed,
                           desirable_reward=cfg.desirable_reward, length_bonus=cfg.length_bonus,
                           label_temperature=cfg.label_temperature)
        write_jsonl(Path(cfg.out_dir) / (("kto_rows" if unpaired else "pairs") + (
            f"_round{round_}" if cfg.rounds > 1 else "") + ".jsonl"), rows)   # to read, reuse
        if not rows:
            raise DataError(f"{cfg.loss} data: the {n} prompts gave no pair (every prompt's "
                            "answers scored alike); give more --num_prompts")
    data_seconds = time.time() - t0
    rows = checklist(rows, steps=cfg.max_steps, batch_size=cfg.batch_size,
                     source=cfg.data or f"{cfg.loss} data")
    if unpaired:
        rows = imbalance(rows, cfg.desirable_ratio, cfg.seed)
    encoded = encode_rows(rows, policy.config.block_size, cfg.data or f"{cfg.loss} data")
    forward = row_logps if unpaired else logps_of
    with torch.no_grad():
        ref_logps = in_batches(lambda b: forward(ref_model, b, device), encoded,
                               batch_size=128) if OBJECTIVES[cfg.loss].reference else None
    print(f"{cfg.loss} on {len(encoded)} {'rows' if unpaired else 'pairs'}, "
          f"{OBJECTIVES[cfg.loss].knob} {cfg.beta}, learning rate {cfg.learning_rate}, "
          f"{cfg.max_steps} steps")
    return encoded, ref_logps, data_seconds


# ------------------------------------------------------------------ one step

def logps_of(model, pairs, device) -> AnswerLogps:
    """log pi of each pair's two answers in one forward: the B pairs (prompt, chosen, rejected)
    go in as 2B rows, the chosen answers then the rejected, and come back as (B, 2)."""
    prompts = [p for p, _, _ in pairs] * 2
    answers = [c for _, c, _ in pairs] + [r for _, _, r in pairs]
    inputs, targets, mask = chat_batch(prompts, answers, device)
    return answer_logps(model(inputs), targets, mask).as_pairs()          # (B, 2)


def preference_loss(cfg, policy: AnswerLogps, ref: AnswerLogps | None, loss_fn=None):
    """The pair objective of --loss, as its OBJECTIVES entry says: its function fed the
    log-probs it takes (sums, or per-token means), the reference's after the policy's if it
    takes them, and its keyword arguments. Returns (per-pair losses (B,), chosen rewards,
    rejected rewards). loss_fn, if given, stands in for the function (the same arguments)."""
    o = OBJECTIVES[cfg.loss]
    k = o.logps(cfg)
    args = [getattr(policy.chosen, k), getattr(policy.rejected, k)]
    if o.reference:
        args += [getattr(ref.chosen, k), getattr(ref.rejected, k)]
    return (loss_fn or o.loss)(*args, **o.kwargs(cfg))


def train(cfg, policy, ref_model, sft_path, device, loss_fn=None) -> float:
    """The loop of the pair losses (DPO, IPO, SimPO, ORPO): for each of --rounds (one, unless
    iterative DPO), pairs from the current policy's answers (round 0: the SFT model's), then
    that round's steps on them. Returns the seconds spent building round 0's pairs: the
    SFT model's answers, shared with every run from it, are data, not training."""
    data_seconds = 0.0
    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(policy, cfg.compile)
    rng, per_round = torch.Generator().manual_seed(cfg.seed), math.ceil(cfg.max_steps / cfg.rounds)
    with TrainingRun(cfg.loss, cfg, policy, opt, rng, cfg.max_steps, log_every=25,
                     show=("loss", "rewards/chosen"), path=(policy, ref_model)) as run:
        for round_ in range(run.start // per_round, cfg.rounds):
            pairs, ref_logps, seconds = prepare(cfg, policy, ref_model, sft_path, device, round_)
            data_seconds += seconds if round_ == 0 else 0.0
            for step in range(max(run.start, round_ * per_round),
                              min(cfg.max_steps, (round_ + 1) * per_round)):
                lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
                idx = shard(torch.randint(len(pairs), (cfg.batch_size,), generator=rng))
                policy_logps = logps_of(net, [pairs[i] for i in idx.tolist()], device)  # (B, 2)
                ref = None if ref_logps is None else ref_logps.select(idx)
                losses, chosen_rewards, rejected_rewards = preference_loss(cfg, policy_logps, ref,
                                                                           loss_fn)
                nll = nll_loss(policy_logps.chosen.mean).mean()
                loss = losses.mean() + cfg.rpo_alpha * nll      # RPO (Pang et al. 2024, Eq. 1)
                loss.backward()
                optimizer_step(policy, opt, cfg.grad_clip)
                run.log(step, {"loss": loss.detach(), f"{cfg.loss}_loss": losses.mean().detach(),
                               "nll_loss": nll.detach(), "lr": lr,
                               **dashboard(policy_logps, chosen_rewards, rejected_rewards)})
    return data_seconds


DASHBOARD = ("rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


def dashboard(policy: AnswerLogps, chosen_rewards, rejected_rewards) -> dict:
    """The metrics every DPO user knows (TRL's names), detached."""
    logps = policy.total.detach()
    log_odds = orpo_log_odds(policy.chosen.mean, policy.rejected.mean).detach()  # ORPO's odds
    return {"rewards/chosen": chosen_rewards.mean(), "rewards/rejected": rejected_rewards.mean(),
            "logps/chosen": logps[:, 0].mean(), "logps/rejected": logps[:, 1].mean(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
            "log_odds_chosen": log_odds.mean(),                  # ratio, logged for every pair
            "log_odds_ratio": torch.nn.functional.logsigmoid(log_odds).mean()}   # (TRL's names)


# ------------------------------------------------------------------ KTO's step

def row_logps(model, rows, device) -> AnswerLogps:
    """log pi of each row's answer, rows (prompt, completion[, label]): (B,)."""
    inputs, targets, mask = chat_batch([r[0] for r in rows], [r[1] for r in rows], device)
    return answer_logps(model(inputs), targets, mask)


def train_kto(cfg, policy, ref_model, sft_path, device, loss_fn=None) -> float:
    """KTO's loop. Its own, because a row is one answer with a label, not a pair: each step
    also needs the reference point z0 (the policy's drift on mismatched prompt-answer pairs)
    and the class weights, and the NLL term holds up the desirable rows alone. loss_fn, if
    given, stands in for losses.kto_loss. Returns the seconds spent building its rows."""
    rows, ref_logps, data_seconds = prepare(cfg, policy, ref_model, sft_path, device)
    w_d, w_u = kto_weights([r[2] for r in rows], cfg.desirable_weight, cfg.undesirable_weight)
    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(policy, cfg.compile)
    rng = torch.Generator().manual_seed(cfg.seed)
    with TrainingRun("kto", cfg, policy, opt, rng, cfg.max_steps, log_every=25,
                     show=("loss", "rewards/chosen"), path=(policy, ref_model)) as run:
        for step in range(run.start, cfg.max_steps):
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            idx = shard(torch.randint(len(rows), (cfg.batch_size,), generator=rng))
            batch = [rows[i] for i in idx.tolist()]
            policy_logps = row_logps(net, batch, device)                          # (B,)
            desirable = torch.tensor([r[2] for r in batch], device=device)
            with torch.no_grad():   # z0 over every process: each completion under the next
                kl = kto_reference_point(*(all_gather(row_logps(m, mismatched(batch), device)
                                                      .total) for m in (net, ref_model)))
            losses, rewards = (loss_fn or kto_loss)(
                policy_logps.total, ref_logps.total[idx], desirable, kl, beta=cfg.beta,
                desirable_weight=w_d, undesirable_weight=w_u)
            nll = nll_loss(policy_logps.mean[desirable]).sum() / len(batch)
            loss = losses.mean() + cfg.rpo_alpha * nll
            loss.backward()
            optimizer_step(policy, opt, cfg.grad_clip)
            logps = policy_logps.total.detach()
            run.log(step, {"loss": loss.detach(), "kto_loss": losses.mean().detach(),
                           "nll_loss": nll.detach(), "lr": lr, "kl": kl,
                           "rewards/chosen": rewards[desirable].mean(),      # NaN for a kind
                           "rewards/rejected": rewards[~desirable].mean(),   # the batch lacks
                           "logps/chosen": logps[desirable].mean(),
                           "logps/rejected": logps[~desirable].mean()})
    return data_seconds


# ------------------------------------------------------------------ main

def main(cfg: DPOConfig, loss_fn=None) -> dict:
    """Train, save, evaluate; returns the aligned model's metrics. loss_fn (the notebooks
    pass their own) replaces the losses.py function of --loss, with the same signature."""
    cfg, device, memory_at_start = start_run(cfg, SMOKE, outputs=[f"{cfg.loss}.pt"])
    t0, o, init = time.time(), OBJECTIVES[cfg.loss], cfg.input_path("init_from")
    if o.start == "sft.pt":
        sft_path, start = init, load_sft(init, device, cfg.allow_pretrained)
    else:                        # ORPO: from the pretrained model, the SFT model its baseline
        sft_path, start = init.with_name("sft.pt"), load_checkpoint(init, device)[0]
        print(f"the policy starts from {init}; the SFT model {sft_path} is only its baseline")
    # pi_ref, the frozen SFT model, is held while training only where the loss (or --eval_every's
    # path) reads it: SimPO and ORPO train with the policy alone
    hold = o.reference or cfg.eval_every > 0
    policy, ref_model = policy_and_reference(start, cfg.lora_rank, cfg.lora_alpha,
                                             cfg.lora_targets.split(","),
                                             reference=hold and o.start == "sft.pt")
    if hold and ref_model is None:                                     # ORPO's path
        ref_model = load_sft(sft_path, device).eval().requires_grad_(False)
    if not o.usual[0] <= cfg.beta <= o.usual[1]:
        print(f"warning: {o.knob} {cfg.beta} is outside the usual range {o.usual} for {cfg.loss}")
    if o.loss is dpo_loss and cfg.beta != o.defaults["beta"] and not cfg.label_temperature:
        print("note: on best-against-worst labels DPO's optimum is unbounded, so beta acts only "
              "through saturation and barely moves the KL; --label_temperature 0.1 --rpo_alpha 0 "
              "(Bradley-Terry labels, the paper's loss) shows what beta trades")
    train_loop = train_kto if cfg.loss == "kto" else train
    data_seconds = train_loop(cfg, policy, ref_model, sft_path, device, loss_fn)
    train_seconds = time.time() - t0 - data_seconds       # building the data is not training
    if not is_main():
        return {}
    if ref_model is None:        # the SFT model, read again: the table's before column, the KL
        ref_model = load_sft(sft_path, device).eval().requires_grad_(False)
    save_checkpoint(Path(cfg.out_dir) / f"{cfg.loss}.pt", merged(policy), asdict(cfg),
                    cfg.max_steps, stage=cfg.loss)
    last = last_logged(Path(cfg.out_dir) / f"{cfg.loss}_metrics.jsonl", DASHBOARD)
    print("the dashboard, the mean of the last 10 steps: " +
          ", ".join(f"{k} {v:.3f}" for k, v in last.items()))
    prompts = eval_prompts(cfg.eval_prompts)
    before, after, _ = against_reference(policy, ref_model, prompts, seed=cfg.seed, samples_path=
                                         Path(cfg.out_dir) / f"{cfg.loss}_samples.jsonl")
    as_pairs = replace(cfg, loss="dpo") if cfg.loss == "kto" else cfg  # KTO's reward is DPO's
    after["implicit_reward_accuracy"] = implicit_reward_accuracy(
        policy, ref_model, prompts, logps_of=logps_of, seed=cfg.seed + 1,
        rewards=lambda p, r: preference_loss(as_pairs, p, r, None if cfg.loss == "kto"
                                             else loss_fn)[1:],
        samples_per_prompt=cfg.samples_per_prompt)
    after["data_seconds"] = data_seconds
    return finish(cfg.out_dir, cfg.loss, {"sft": before, cfg.loss: after},
                  f"\nSFT vs {cfg.loss} ({o.knob} {cfg.beta}{hooked(loss_fn=loss_fn)}) on "
                  f"{len(prompts)} held-out prompts",
                  train_seconds=train_seconds, device=device, memory_at_start=memory_at_start)


if __name__ == "__main__":
    run_cli(main, DPOConfig, __doc__)
