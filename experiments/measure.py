"""What compare.py measures in its own process, from each seed's SFT model: best-of-N
sampling, the spread of GRPO's group baseline against G, the SFT control's KL, and the
trainable parameters of each kind of method."""

import math
import time
from pathlib import Path

import torch

from data.world import eval_prompts, is_correct, reward
from model import ScoreModel, add_lora, load_checkpoint
from plumbing.evaluation import generate, kl_to_reference

BEST_OF = (1, 2, 4, 8, 16)
GROUP_SIZES = (2, 4, 8, 16)


@torch.no_grad()
def best_of_n(model, prompts, seed: int) -> dict[str, float]:
    """Mean true reward of the best of the first N of 16 samples per prompt, for each N."""
    texts, _ = generate(model, prompts, num_samples=max(BEST_OF), seed=seed)
    R = torch.tensor([[reward(p, texts[i * max(BEST_OF) + g]) for g in range(max(BEST_OF))]
                      for i, p in enumerate(prompts)])                   # (prompts, 16)
    return {str(n): R[:, :n].max(1).values.mean().item() for n in BEST_OF}


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n nats, for answers without ties."""
    return math.log(n) - (n - 1) / n


@torch.no_grad()
def group_baseline(model, prompts, seed: int, samples: int = 64) -> dict[str, dict]:
    """GRPO's advantage is (r - group mean) / group std. For each G: how far the group mean
    (the baseline every answer is compared with) moves between groups of one prompt (std over
    its samples // G groups, mean over prompts); the share of groups whose rewards are all
    equal (zero std: no gradient); and the seconds to sample G answers for every prompt."""
    texts, _ = generate(model, prompts, num_samples=samples, seed=seed)
    R = torch.tensor([float(is_correct(p, t)) for p, t in
                      zip([p for p in prompts for _ in range(samples)], texts)])
    R = R.view(len(prompts), samples)                                     # the rule reward
    out = {}
    for G in GROUP_SIZES:
        groups = R[:, :samples // G * G].reshape(len(prompts), samples // G, G)
        t0 = time.perf_counter()
        generate(model, prompts, num_samples=G, seed=seed + G)
        out[str(G)] = {"baseline_std": groups.mean(-1).std(-1).mean().item(),
                       "frac_zero_std": (groups.std(-1) == 0).float().mean().item(),
                       "sample_seconds": time.perf_counter() - t0}
    return out


def trainable_params(sft_path) -> dict[str, int]:
    """Trainable parameters, by Method.trainable: every weight of the model, the LoRA
    adapters (rank 8, the default targets), or the policy and PPO's critic (a ScoreModel)."""
    model, _ = load_checkpoint(sft_path)
    full = model.num_params()
    add_lora(model, 8, 16.0)
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    critic = ScoreModel(model.config).num_params()
    return {"model": full, "lora": lora, "model + critic": full + critic}


def measure(result: dict, seeds: list[int], out: Path, smoke: bool) -> None:
    """The measurements made in this process, per seed, from the seed's SFT model."""
    prompts = eval_prompts(16 if smoke else 256)
    result.update(best_of_n={}, group_baseline={}, sft_control_kl={})
    for seed in seeds:
        sft_path = out / f"seed{seed}" / "sft.pt"
        sft, _ = load_checkpoint(sft_path)
        result["best_of_n"][str(seed)] = best_of_n(sft, prompts, seed)
        result["group_baseline"][str(seed)] = group_baseline(sft, prompts[:64], seed,
                                                             32 if smoke else 64)
        control = result["runs"].get("sft_control", {}).get("", {}).get(str(seed))
        if control:
            more, _ = load_checkpoint(Path(control["folder"]) / "sft.pt")
            _, tokens = generate(more, prompts, seed=seed)
            result["sft_control_kl"][str(seed)] = kl_to_reference(more, sft, prompts, tokens)
    result["trainable_params"] = trainable_params(out / f"seed{seeds[0]}" / "sft.pt")
