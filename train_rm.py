"""Classic RLHF, stage 1: a Bradley-Terry reward model learned from preference pairs.

    python train_rm.py                             # SFT samples, noisy Bradley-Terry labels
    python train_rm.py --label_temperature 0.02 --out_dir out/rm_t0.02 --init_from out/sft.pt
    python train_rm.py --data out/pairs.jsonl --out_dir out/rm_dpo_pairs --init_from out/sft.pt

InstructGPT's reward model (Ouyang et al. 2022, Sec. 3.5), in four steps:
1. Comparisons: the SFT model answers each training prompt twice, and a rater
   prefers one. The rater is the toy world's true reward with Bradley-Terry noise:
   a is preferred with probability sigmoid((r_a - r_b) / --label_temperature), so
   labels are wrong now and then, as a human's are (data.pairs.pairs_from_samples).
   --pair_source offpolicy takes two personas' written answers instead (--smoke does).
2. Model: the SFT GPT with its unembedding replaced by a scalar head
   (model.ScoreModel), read at the last token of prompt + completion, the end token
   (model.sequence_scores).
3. Loss: -log sigmoid(r(x, y_w) - r(x, y_l)) per pair (losses.reward_model_loss,
   Eq. 1), plus --center_rewards_coefficient x (r_w + r_l)^2 (losses.reward_centering;
   Eisenstein et al. 2023, TRL's RewardTrainer), which keeps the scores near 0.
4. Normalisation: the head is rescaled so that the scores of the SFT model's own
   answers have mean 0 and std 1 (as OpenAI's lm-human-preferences does), so PPO's
   kl_coef weighs the same score scale whatever the training left.

Departures, and why: InstructGPT shows a rater K = 4..9 answers and trains on all
K(K-1)/2 pairs of a prompt in one batch; here each prompt gives one pair (K = 2),
on a few thousand prompts. The evaluation asks what PPO will need: on held-out
prompts, does the score order two SFT answers as the true reward does (pair
accuracy), and how well does it rank all of them (Spearman rank correlation)?
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from data.batching import chat_batch, encode_rows, prompt_ids
from data.pairs import label_agreement, offpolicy_pairs, pairs_from_samples, read_pairs
from data.world import eval_prompts, reward, rl_rows
from evaluation import generate, kept_answers, scores_of_answers
from losses import reward_centering, reward_model_loss
from model import ScoreModel, load_sft, save_checkpoint, sequence_scores
from plumbing.distributed import for_training, is_main, shard
from plumbing.flags import AlignConfig, flag, run_cli
from plumbing.loop import TrainingRun, make_optimizer, optimizer_step, set_lr
from plumbing.run import finish, start_run


@dataclass
class RMConfig(AlignConfig):
    center_rewards_coefficient: float = flag(0.0, "weight of mean((r_w + r_l)^2), which "
                                             "centres the scores (TRL's; 0: off)", "method",
                                             at_least=0)
    data: str = flag("", "JSONL of {prompt, chosen, rejected} pairs (default: SFT samples "
                         "labelled by the noisy rater)", "data")
    pair_source: str = flag("onpolicy", "onpolicy: two SFT answers per prompt; offpolicy: "
                                        "two personas' written answers", "data",
                            choices=["onpolicy", "offpolicy"])
    num_prompts: int = flag(4000, "training prompts, one pair each", "data", at_least=1)
    # 0.1: a right answer beats a wrong one 99.99% of the time, concise beats chatty
    # (0.23 apart) 91%, concise beats friendly (0.03 apart) 57%
    label_temperature: float = flag(0.1, "the rater's Bradley-Terry temperature: higher is "
                                    "noisier", "data", above=0)
    length_bonus: float = flag(0.0, "a rater biased toward length: it adds this per word to "
                               "the true reward", "data", at_least=0)
    learning_rate: float = flag(1e-4, "peak learning rate (AdamW)", above=0)
    batch_size: int = flag(32, "pairs per step", at_least=1)
    max_steps: int = flag(250, "optimizer steps", at_least=1)
    warmup_steps: int = flag(10, "linear warmup steps", at_least=0)


# Smoke pairs come from the persona generator (an untrained smoke model's samples are byte soup)
SMOKE = dict(num_prompts=32, max_steps=6, batch_size=8, eval_prompts=16, pair_source="offpolicy")


def scores_of(rm, prompts: list[list[int]], answers: list[list[int]], device) -> torch.Tensor:
    """The reward model's score of each prompt + answer (token ids), read at its end token: (N,)."""
    return sequence_scores(rm, *chat_batch(prompts, answers, device))


def train(cfg, rm, encoded, device):
    """The training loop. encoded: (prompt, chosen, rejected) token ids of each pair."""
    opt = make_optimizer(rm, cfg.learning_rate, cfg.weight_decay, device)
    net = for_training(rm, cfg.compile)
    rng = torch.Generator().manual_seed(cfg.seed)
    with TrainingRun("rm", cfg, rm, opt, rng, cfg.max_steps, log_every=25,
                     show=("loss", "accuracy")) as run:
        for step in range(run.start, cfg.max_steps):
            lr = set_lr(opt, step, cfg.max_steps, cfg.warmup_steps, cfg.learning_rate)
            idx = shard(torch.randint(len(encoded), (cfg.batch_size,), generator=rng))
            prompts, chosen, rejected = zip(*(encoded[i] for i in idx.tolist()))
            scores = scores_of(net, prompts * 2, chosen + rejected, device)          # (2B,)
            chosen_scores, rejected_scores = scores.chunk(2)                         # (B,) each
            loss = (reward_model_loss(chosen_scores, rejected_scores).mean() +       # Eq. 1
                    cfg.center_rewards_coefficient * reward_centering(chosen_scores,
                                                                      rejected_scores).mean())
            loss.backward()
            optimizer_step(rm, opt, cfg.grad_clip)
            run.log(step, {"loss": loss.detach(), "lr": lr,
                           "accuracy": (chosen_scores > rejected_scores).float().mean(),
                           "margin": (chosen_scores - rejected_scores).detach().mean()})


@torch.no_grad()
def normalise(rm, prompts, completions) -> tuple[float, float]:
    """Rescale the head so that these rows' scores have mean 0 and std 1; returns the
    (mean, std) they had. Pass the SFT model's answers (step 4 of the docstring)."""
    scores = scores_of_answers(rm, prompts, completions)
    mean, std = scores.mean().item(), scores.std().item()
    rm.head.weight.div_(std)
    rm.head.bias.sub_(mean).div_(std)
    return mean, std


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rho: the Pearson correlation of the ranks, tied values sharing their mean
    rank (the true reward has many ties)."""
    def ranks(v):
        order = v.argsort()
        r = torch.empty_like(v)
        r[order] = torch.arange(len(v), dtype=v.dtype)
        for value in v.unique():          # ties: the mean of their ranks
            tied = v == value
            r[tied] = r[tied].mean()
        return r
    rx, ry = ranks(x.double()), ranks(y.double())
    return torch.corrcoef(torch.stack([rx, ry]))[0, 1].item()


def evaluate_rm(rm, sft_model, cfg) -> dict:
    """Held-out: two SFT answers per prompt, scored by the RM and by the true reward."""
    prompts = eval_prompts(cfg.eval_prompts)
    answers, tokens = generate(sft_model, prompts, num_samples=2, seed=cfg.seed + 1)
    rows = [p for p in prompts for _ in range(2)]
    true = torch.tensor([reward(p, a) for p, a in zip(rows, answers)])
    scores = scores_of_answers(rm, [prompt_ids(p) for p in rows], tokens).cpu()
    true_diff, score_diff = (true[0::2] - true[1::2]), (scores[0::2] - scores[1::2])
    judged = true_diff != 0                                               # ties have no order
    return {"pair_accuracy": ((true_diff > 0) == (score_diff > 0))[judged].float().mean().item(),
            "pairs_judged": int(judged.sum()),
            "rank_correlation": rank_correlation(scores, true),
            "score_mean": scores.mean().item(), "score_std": scores.std().item()}


def build_pairs(cfg, sft_model, init) -> list[dict]:
    """Step 1: the SFT model answers each training prompt twice (or two personas do) and the
    noisy rater labels the two. The SFT model's answers are kept beside its checkpoint."""
    prompts = [r["prompt"] for r in rl_rows(cfg.num_prompts, seed=cfg.seed + 300)]
    labels = dict(seed=cfg.seed + 300, label_temperature=cfg.label_temperature,
                  length_bonus=cfg.length_bonus)
    if cfg.pair_source == "offpolicy":
        return offpolicy_pairs(prompts, **labels)
    answers = kept_answers(sft_model, prompts, num_samples=2, seed=cfg.seed + 300, beside=init)
    return pairs_from_samples(prompts, answers, **labels)


def main(cfg: RMConfig) -> dict:
    """Train, normalise, save, evaluate; returns the reward model's held-out metrics."""
    cfg, device, memory_at_start = start_run(cfg, SMOKE, outputs=["rm.pt"])
    t0 = time.time()
    init = cfg.input_path("init_from")
    sft_model = load_sft(init, device, cfg.allow_pretrained)
    sft_model.eval()
    t1 = time.time()
    pairs = read_pairs(cfg.data) if cfg.data else build_pairs(cfg, sft_model, init)
    data_seconds = time.time() - t1        # the SFT model's answers, judged: data, not training
    # rows are read whole (the end token included), so they fit block_size, not block_size + 1
    encoded = encode_rows(pairs, sft_model.config.block_size - 1, cfg.data or "reward model pairs")
    rm = ScoreModel.from_gpt(sft_model)
    agreement = label_agreement(pairs)
    print(f"reward model from {init}: {len(encoded)} pairs (the rater agrees with the true "
          f"reward on {agreement:.3f} of them), {cfg.max_steps} steps")
    train(cfg, rm, encoded, device)
    rm.eval()
    prompts, chosen, rejected = zip(*encoded)
    mean, std = normalise(rm, list(prompts) * 2, list(chosen + rejected))
    train_seconds = time.time() - t0 - data_seconds
    if not is_main():
        return {}
    save_checkpoint(Path(cfg.out_dir) / "rm.pt", rm, asdict(cfg), cfg.max_steps, stage="rm",
                    normalised_from={"mean": mean, "std": std})
    metrics = {**evaluate_rm(rm, sft_model, cfg), "label_agreement": agreement,
               "data_seconds": data_seconds}
    return finish(cfg.out_dir, "rm", {"reward model": metrics},
                  f"\nReward model on {cfg.eval_prompts} held-out prompts x 2 SFT answers",
                  train_seconds=train_seconds, device=device, memory_at_start=memory_at_start)


if __name__ == "__main__":
    run_cli(main, RMConfig, __doc__)
