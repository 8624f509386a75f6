"""Benchmarks that print a table (timings are medians of --repeats runs in one process).

    python bench.py                    # sampling: KV cache vs the naive sampler, G = 8

Sampling throughput is what GRPO spends most of its time on. Both samplers draw
the same tokens (tests/test_model.py holds them to it), so tokens/s compare
like for like. Uses OUT_DIR/sft.pt if it exists, else a fresh model of the
default size (the speed does not depend on the weights, the lengths do).
"""

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data.batching import end_id, prompt_ids
from data.evaluation import MAX_NEW_TOKENS
from data.tokenizer import get_tokenizer
from data.world import eval_prompts
from model import GPT, GPTConfig, get_device, load_checkpoint, sample, sample_naive
from train_utils import flag, print_table, run_cli


@dataclass
class BenchConfig:
    out_dir: str = flag("out", "folder holding sft.pt (optional)")
    prompts: int = flag(16, "prompts per sampling call")
    num_generations: int = flag(8, "G: samples per prompt")
    repeats: int = flag(3, "timed runs per sampler (the median is reported)")
    device: str = flag("auto", "cuda, mps or cpu (auto picks in that order)")


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main(cfg: BenchConfig) -> dict:
    device = get_device(cfg.device)
    ckpt = Path(cfg.out_dir) / "sft.pt"
    if ckpt.exists():
        model, _ = load_checkpoint(ckpt, device)
    else:
        model = GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab)).to(device)
    model.eval()
    prompts = [prompt_ids(p) for p in eval_prompts(cfg.prompts)]
    rows = {}
    for name, sampler in [("kv cache", sample), ("naive", sample_naive)]:
        times = []
        for r in range(cfg.repeats):
            gen = torch.Generator().manual_seed(r)
            dt, (tokens, mask) = timed(lambda: sampler(model, prompts, MAX_NEW_TOKENS, end_id(),
                                                       1.0, None, cfg.num_generations, gen),
                                       device)
            times.append(dt)
            n_tokens = int(mask.sum())
        median = statistics.median(times)
        rows[name] = {"seconds (median)": median, "tokens": n_tokens,
                      "tokens/s": n_tokens / median}
    rows["kv cache"]["speedup"] = rows["naive"]["seconds (median)"] / \
        rows["kv cache"]["seconds (median)"]
    print_table(rows, title=f"\nSampling {cfg.prompts} prompts x G={cfg.num_generations} on "
                            f"{device.type} ({'sft.pt' if ckpt.exists() else 'fresh model'})")
    return rows


if __name__ == "__main__":
    run_cli(main, BenchConfig, __doc__)
