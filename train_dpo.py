"""Offline preference optimisation: DPO, IPO, SimPO and KTO from the SFT model, ORPO
from the pretrained one.

    python train_dpo.py                       # DPO, beta 0.1, on-policy pairs
    python train_dpo.py --loss ipo            # IPO (beta is the paper's tau)
    python train_dpo.py --loss simpo          # SimPO: no reference model
    python train_dpo.py --loss kto            # KTO: answers labelled good or bad, no pairs
    python train_dpo.py --loss orpo           # ORPO: from pretrain.pt, no SFT stage, no reference
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
  --ipo_sum uses sums. SimPO and ORPO always use means.
- KTO (kto.py) trains on single answers labelled desirable or not: by default the
  SFT model's samples that DPO's pairs come from, labelled by a rule on the true reward.
- ORPO (Hong et al. 2024) replaces SFT + DPO with one stage from OUT_DIR/pretrain.pt:
  the chosen answer's NLL plus an odds-ratio term, no reference model. The pretrained
  model cannot answer in the chat format yet, so its pairs are the persona generator's
  written answers (offpolicy); the SFT model of OUT_DIR/sft.pt is its "before" column.
"""

import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from cli import LoRAConfig, flag, run_cli
from data.batching import encode_rows, read_jsonl, to_device, write_jsonl
from data.world import PERSONA_MIX, eval_prompts, respond, reward, rl_rows, parse_prompt
from distributed import barrier, for_training, is_main, shard
from evaluation import (answer_logps, answer_logps_of_all, evaluate, generate, kl_to_reference,
                        win_rate)
import kto
from losses import dpo_loss, ipo_loss, nll_loss, orpo_log_odds, orpo_loss, simpo_loss
from model import load_checkpoint, merged, save_checkpoint
from train_utils import (load_policy_and_reference, lora, make_optimizer, optimizer_step,
                         peak_memory_mb, print_table, save_json, set_lr, start_run)
from training_run import TrainingRun

# Each objective's defaults for the flags left unset. IPO's tau acts on per-token means
# here: 0.1 asks for a 1/(2 tau) = 5-nat gap per token (KL to the reference reached 33),
# 0.5 for one nat. ORPO does SFT's work too: SFT's learning rate, SFT's steps + DPO's,
# and written pairs for 20000 prompts (SFT sees 19,200 rows), cheap since nothing is sampled.
# The paired objectives whose loss reads the reference's log-probs (SimPO and ORPO have none).
WITH_REFERENCE = ("dpo", "ipo")
FROM_SFT = dict(pair_source="onpolicy", num_prompts=2000, learning_rate=2e-4, max_steps=150)
LOSS_DEFAULTS = {
    "dpo": dict(FROM_SFT, beta=0.1),
    "ipo": dict(FROM_SFT, beta=0.5),
    "simpo": dict(FROM_SFT, beta=2.0),
    "kto": dict(FROM_SFT, beta=0.1),
    "orpo": dict(beta=0.1, pair_source="offpolicy", num_prompts=20000, learning_rate=1e-3,
                 max_steps=750),
}


@dataclass
class DPOConfig(LoRAConfig):
    loss: str = flag("dpo", "which objective", "method",
                     choices=["dpo", "ipo", "simpo", "kto", "orpo"])
    beta: float = flag(None, "beta (DPO, SimPO, KTO), tau (IPO) or lambda (ORPO) (default: "
                             "2.0 for simpo, 0.5 for ipo, else 0.1)", "method", above=0)
    gamma: float = flag(0.5, "SimPO target margin", "method", at_least=0)
    label_smoothing: float = flag(0.0, "conservative DPO: assumed label-flip probability",
                                  "method", at_least=0)
    ipo_sum: bool = flag(False, "IPO on summed instead of per-token mean log-probs (the "
                                "default follows the IPO authors and TRL)", "method")
    rpo_alpha: float = flag(1.0, "weight of the NLL term on the chosen (KTO: desirable) "
                            "answers: RPO for DPO, the SFT term of ORPO; 0 is the paper's "
                            "loss, which runs away on this model (not ORPO's)", "method",
                            at_least=0)
    desirable_weight: float = flag(None, "KTO's w_D (default: n_U / n_D, so that w_D n_D = "
                                   "w_U n_U)", "method", above=0)
    undesirable_weight: float = flag(1.0, "KTO's w_U", "method", above=0)
    data: str = flag("", "JSONL of {prompt, chosen, rejected} pairs, or for KTO also "
                         "{prompt, completion, label} rows (default: build them)", "data")
    pair_source: str = flag(None, "how to build pairs (KTO: rows): onpolicy (SFT samples "
                            "judged by the reward) or offpolicy (two personas' answers) "
                            "(default: offpolicy for orpo, else onpolicy)", "data",
                            choices=["onpolicy", "offpolicy"])
    num_prompts: int = flag(None, "training prompts to build pairs from (default: 20000 for "
                                  "orpo, else 2000)", "data", at_least=1)
    samples_per_prompt: int = flag(4, "on-policy samples per prompt", "data", at_least=2)
    label_temperature: float = flag(0.0, "0: best beats worst; > 0: Bradley-Terry labels",
                                    "data", at_least=0)
    length_bonus: float = flag(0.0, "a labeller biased toward length: it adds this per word "
                               "to the true reward (0.03: a chatty right answer beats a "
                               "concise one)", "data", at_least=0)
    # 0.9: a concise (1.0) or friendly (0.97) right answer; a chatty right one scores 0.77,
    # rude, careless and refusing ones 0.5 or less
    desirable_reward: float = flag(0.9, "KTO: an answer is desirable when its true reward is "
                                   "at least this", "data")
    desirable_ratio: float = flag(0.0, "KTO: drop desirable rows at random until n_D / n_U "
                                  "is at most this (0.111: one good answer for nine bad; 0: "
                                  "keep all)", "data", at_least=0)
    live_ref: bool = flag(False, "keep a reference model and recompute its log-probs each step")
    # 2e-4: at 1e-4 some seeds' samples often began like a rejected answer ("Sorry",
    # "Hmm") and broke off into no persona (README, "How the defaults were chosen")
    learning_rate: float = flag(None, "peak learning rate (AdamW) (default: 1e-3 for orpo, "
                                "else 2e-4)", above=0)
    batch_size: int = flag(32, "pairs (KTO: rows) per step", at_least=1)
    max_steps: int = flag(None, "optimizer steps (default: 750 for orpo, else 150)",
                          at_least=1)
    warmup_steps: int = flag(10, "linear warmup steps", at_least=0)

    DEFAULTS_FROM = ("loss",)     # the flags left unset take the defaults of their --loss

    def __post_init__(self):
        super().__post_init__()
        for name, value in LOSS_DEFAULTS[self.loss].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.label_smoothing >= 0.5:
            raise ValueError(f"--label_smoothing must be < 0.5, got {self.label_smoothing}")


# Smoke pairs come from the persona generator: an untrained smoke model's samples are
# byte soup that re-encodes longer than the context.
SMOKE = dict(num_prompts=64, max_steps=10, batch_size=8, eval_prompts=16,
             pair_source="offpolicy")


# ------------------------------------------------------------------ pairs

def judge(prompt, answer, length_bonus=0.0) -> float:
    """The labeller's score: the true reward, plus length_bonus per word (a labeller biased
    toward long answers, as the DPO checklist warns of; 0 by default)."""
    return reward(prompt, answer) + length_bonus * len(answer.split())


def label(rng, prompt, a, b, cfg):
    """(chosen, rejected) from two responses, or None for a tie under deterministic labels."""
    ra, rb = (judge(prompt, r, cfg.length_bonus) for r in (a, b))
    if cfg.label_temperature > 0:
        a_wins = rng.random() < 1 / (1 + math.exp(-(ra - rb) / cfg.label_temperature))  # B-T
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
        group = sorted(answers[i * K:(i + 1) * K],
                       key=lambda r: judge(p, r, cfg.length_bonus))
        a, b = (group[-1], group[0]) if cfg.label_temperature == 0 else rng.sample(group, 2)
        if a != b and (lab := label(rng, p, a, b, cfg)):
            pairs.append({"prompt": p, "chosen": lab[0], "rejected": lab[1]})
    return pairs


def offpolicy_pairs(prompts, cfg, seed):
    """Two different personas answer each prompt (written by the generator, not the model)."""
    rng, pairs = random.Random(seed), []
    for p in prompts:
        task = parse_prompt(p)
        a, b = (respond(task, persona, rng) for persona in rng.sample(list(PERSONA_MIX), 2))
        if lab := label(rng, p, a, b, cfg):
            pairs.append({"prompt": p, "chosen": lab[0], "rejected": lab[1]})
    return pairs


def build_data(ref_model, init, cfg) -> list[dict]:
    """Training pairs (KTO: labelled rows): from --data, or built and cached in OUT_DIR."""
    read = kto.read_rows if cfg.loss == "kto" else \
        (lambda path: read_jsonl(path, ("prompt", "chosen", "rejected")))
    if cfg.data:
        return read(cfg.data)
    kind = f"kto_rows_d{cfg.desirable_reward}" if cfg.loss == "kto" else "pairs"
    cache = Path(cfg.out_dir) / (f"{kind}_{cfg.pair_source}_n{cfg.num_prompts}_k"
                                 f"{cfg.samples_per_prompt}_t{cfg.label_temperature}_"
                                 f"b{cfg.length_bonus}_s{cfg.seed}.jsonl")
    fresh = cache.exists() and cache.stat().st_mtime > init.stat().st_mtime
    if is_main() and not fresh:  # one process builds them, the others wait and read
        prompts = [r["prompt"] for r in rl_rows(cfg.num_prompts, seed=cfg.seed + 100)]
        if cfg.loss == "kto" and cfg.pair_source == "onpolicy":
            rows = kto.onpolicy_rows(ref_model, prompts, cfg, cfg.seed)
        elif cfg.pair_source == "onpolicy":
            rows = onpolicy_pairs(ref_model, prompts, cfg, cfg.seed)
        else:
            rows = offpolicy_pairs(prompts, cfg, cfg.seed)
        write_jsonl(cache, rows)
    barrier()
    return read(cache)


def encode_pairs(pairs, block_size: int, source: str, required: bool = True):
    """(prompt, chosen, rejected) token ids; pairs too long for the context are dropped."""
    return encode_rows(pairs, ("chosen", "rejected"), block_size, source, required)


class PairLogps(NamedTuple):
    """log pi of each pair's answers, each (B,): summed over the answer's tokens, and the
    per-token mean (the length-normalised form SimPO, IPO and ORPO use)."""
    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_mean: torch.Tensor
    rejected_mean: torch.Tensor

    def select(self, idx, device) -> "PairLogps":
        return PairLogps(*(to_device(t[idx], device) for t in self))


def pair_logps(model, batch, device) -> PairLogps:
    """One concatenated forward over chosen and rejected answers (B pairs -> 2B rows)."""
    B = len(batch)
    logps = answer_logps(model, [p for p, _, _ in batch] * 2,
                         [c for _, c, _ in batch] + [r for _, _, r in batch], device)
    return PairLogps(logps.total[:B], logps.total[B:], logps.mean[:B], logps.mean[B:])


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
    if cfg.loss == "simpo":
        return (loss_fn or simpo_loss)(policy.chosen_mean, policy.rejected_mean, beta=cfg.beta,
                                       gamma=cfg.gamma)
    return (loss_fn or orpo_loss)(policy.chosen_mean, policy.rejected_mean, beta=cfg.beta)


# ------------------------------------------------------------------ checks

def warn_if_suspicious(cfg, pairs):
    """Warnings from the DPO debugging checklist (load_policy_and_reference warns when the
    start is not an SFT checkpoint)."""
    sensible = (0.5, 10.0) if cfg.loss == "simpo" else (0.01, 1.0)
    if not sensible[0] <= cfg.beta <= sensible[1]:
        print(f"warning: beta {cfg.beta} is outside the usual range {sensible} for {cfg.loss}")
    if cfg.loss == "kto":
        return
    chosen = sum(len(r["chosen"].split()) for r in pairs) / len(pairs)
    rejected = sum(len(r["rejected"].split()) for r in pairs) / len(pairs)
    if chosen > 1.5 * rejected:
        print(f"warning: chosen answers are much longer than rejected ({chosen:.1f} vs "
              f"{rejected:.1f} words): the model may learn length instead of quality")


# ------------------------------------------------------------------ main

def train(cfg, policy, ref_model, encoded, ref_logps, device, loss_fn=None, weights=None):
    """The training loop. encoded: the pairs (KTO: rows) as token ids; ref_logps: the
    reference's log-probs of every one (None: --live_ref, or no reference in the loss)."""
    opt = make_optimizer(policy, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(policy, cfg.compile)
    rng = torch.Generator().manual_seed(cfg.seed)
    with TrainingRun(cfg.loss, cfg, policy, opt, rng, cfg.max_steps, log_every=25,
                     show=("loss", "rewards/chosen")) as run:
        for step in range(run.start, cfg.max_steps):
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            idx = shard(torch.randint(len(encoded), (cfg.batch_size,), generator=rng))
            batch = [encoded[i] for i in idx.tolist()]
            batch_ref_logps = None if ref_logps is None else ref_logps.select(idx, device)
            if cfg.loss == "kto":
                loss, metrics = kto.step_loss(cfg, net, ref_model, batch, batch_ref_logps,
                                              weights, device, loss_fn)
            else:
                loss, metrics = pair_step_loss(cfg, net, ref_model, batch, batch_ref_logps,
                                               device, loss_fn)
            loss.backward()
            optimizer_step(policy, opt, cfg.grad_clip)
            run.log(step, {"loss": loss.detach(), "lr": lr, **metrics})


def pair_step_loss(cfg, net, ref_model, batch, ref_logps: PairLogps | None, device,
                   loss_fn=None):
    """One step's loss and metrics for the paired objectives. batch: B (prompt, chosen,
    rejected) id lists; ref_logps: the reference's log-probs of these pairs (None: --live_ref,
    or an objective without a reference)."""
    policy_logps = pair_logps(net, batch, device)
    if cfg.live_ref and cfg.loss in WITH_REFERENCE:
        with torch.no_grad():
            ref_logps = pair_logps(ref_model, batch, device)
    losses, chosen_rewards, rejected_rewards = preference_loss(cfg, policy_logps, ref_logps,
                                                               loss_fn)
    nll = nll_loss(policy_logps.chosen_mean).mean()
    loss = losses.mean() + cfg.rpo_alpha * nll          # RPO (Pang et al. 2024, Eq. 1); ORPO Eq. 6
    metrics = {"nll_loss": nll.detach(),
               "rewards/chosen": chosen_rewards.mean(),
               "rewards/rejected": rejected_rewards.mean(),
               "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
               "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
               "logps/chosen": policy_logps.chosen.detach().mean(),
               "logps/rejected": policy_logps.rejected.detach().mean()}
    if cfg.loss == "orpo":
        log_odds = orpo_log_odds(policy_logps.chosen_mean, policy_logps.rejected_mean).detach()
        metrics["log_odds_chosen"] = log_odds.mean()
        metrics["log_odds_ratio"] = torch.nn.functional.logsigmoid(log_odds).mean()
    return loss, metrics


@torch.no_grad()
def implicit_reward_accuracy(cfg, policy, ref_model, device, loss_fn=None):
    """Share of held-out pairs (on-policy from the reference, best against worst) where
    the policy's implicit reward ranks chosen above rejected."""
    heldout = onpolicy_pairs(ref_model, eval_prompts(cfg.eval_prompts), replace(
        cfg, label_temperature=0.0, length_bonus=0.0), cfg.seed + 1)
    encoded = encode_pairs(heldout, policy.config.block_size, "held-out pairs", required=False)
    if not encoded:
        return float("nan")
    if cfg.loss == "kto":   # its implicit reward is DPO's, beta log pi/pi_ref of the answer
        cfg, loss_fn = replace(cfg, loss="dpo"), None
    _, chosen_rewards, rejected_rewards = preference_loss(
        cfg, pair_logps_of_all(policy, encoded, device),
        pair_logps_of_all(ref_model, encoded, device), loss_fn)
    return (chosen_rewards > rejected_rewards).float().mean().item()


def load_models(cfg, device):
    """(policy, reference, the checkpoint the reference is): the policy starts from the SFT
    model and the reference is a frozen copy of it. ORPO's policy starts from the pretrained
    model (--init_from, default OUT_DIR/pretrain.pt), and the SFT model it replaces, the
    sft.pt beside it, is only the evaluation's baseline."""
    if cfg.loss != "orpo":
        return load_policy_and_reference(cfg, device)
    start = Path(cfg.init_from or Path(cfg.out_dir) / "pretrain.pt")
    policy, _ = load_checkpoint(start, device)
    if cfg.lora_rank:
        lora(policy, cfg)
    # the SFT model train_sft.py wrote beside that pretrained checkpoint
    _, sft_model, sft_path = load_policy_and_reference(
        replace(cfg, init_from=str(start.with_name("sft.pt")), lora_rank=0), device)
    print(f"orpo starts from {start}; the SFT model {sft_path} is only its baseline")
    return policy, sft_model, sft_path


def main(cfg: DPOConfig, loss_fn=None) -> dict:
    """Train, save, evaluate; returns the aligned model's metrics. loss_fn (the notebooks
    pass their own) replaces the losses.py function of --loss, with the same signature."""
    cfg, device = start_run(cfg, SMOKE, outputs=[f"{cfg.loss}.pt"])
    t0 = time.time()
    policy, ref_model, init = load_models(cfg, device)
    rows = build_data(ref_model, init, cfg)
    warn_if_suspicious(cfg, rows)
    block_size, source = policy.config.block_size, cfg.data or f"{cfg.loss} data"
    weights = None
    if cfg.loss == "kto":
        rows = kto.imbalance(rows, cfg.desirable_ratio, cfg.seed)
        encoded = kto.encode(rows, block_size, source)
        weights = kto.class_weights(cfg, encoded)
        ref_logps = answer_logps_of_all(ref_model, [r[0] for r in encoded],
                                        [r[1] for r in encoded], batch_size=128)
    else:
        encoded = encode_pairs(rows, block_size, source)
        precompute = cfg.loss in WITH_REFERENCE and not cfg.live_ref
        ref_logps = pair_logps_of_all(ref_model, encoded, device) if precompute else None
    print(f"{cfg.loss} on {len(encoded)} {'rows' if cfg.loss == 'kto' else 'pairs'}, "
          f"beta {cfg.beta}, learning rate {cfg.learning_rate}, {cfg.max_steps} steps")
    train(cfg, policy, ref_model, encoded, ref_logps, device, loss_fn, weights)
    train_seconds = time.time() - t0
    if not is_main():
        return {}
    save_checkpoint(Path(cfg.out_dir) / f"{cfg.loss}.pt", merged(policy), asdict(cfg),
                    cfg.max_steps, stage=cfg.loss)

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
    after["peak_memory_mb"] = peak_memory_mb(device)
    save_json(out / f"{cfg.loss}_eval.json", after)
    print_table({"sft": before, cfg.loss: after},
                title=f"\nSFT vs {cfg.loss} (beta {cfg.beta}) on {len(prompts)} held-out prompts")
    return after


if __name__ == "__main__":
    run_cli(main, DPOConfig, __doc__)
