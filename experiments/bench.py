"""Benchmarks that print a table for this machine (medians of --repeats timed runs).

    python experiments/bench.py                          # the default model, on the default device
    python experiments/bench.py --n_layer 8 --n_embd 512 --block_size 256 --batch_size 32   # a bigger one
    python experiments/bench.py --smoke                  # every row once, on a tiny model (seconds)

Rows:
    matmul peak      this machine's own measured matmul FLOP/s (fp32 on CPU, bf16 on
                     CUDA), the fastest run before or after the other rows: the yardstick
                     for the next row
    train step       a pretraining step (forward, backward, AdamW) on packed rows:
                     tokens/s, and model FLOP/s as a fraction of the matmul peak (MFU).
                     FLOPs per token = 6 N + 12 n_layer n_embd block_size (N: the
                     parameters that multiply, i.e. without the position table)
    dpo step         one DPO step on --batch_size pairs, three ways: the reference's
                     log-probs precomputed (as train_dpo.py does), a live reference (a
                     frozen copy of the model, run every step: two models in memory), and
                     LoRA of --lora_rank (the reference is the same model with its adapters
                     off, run every step: one model, gradients and AdamW state for the
                     adapters only)
    sampling         GRPO's rollout: prompts x G answers with the KV cache, and with the
                     naive sampler (a full forward per token, one row at a time). Both
                     draw the same tokens (tests/test_model.py holds them to it)
Peak memory is the process's peak resident set on CPU, and the peak allocated by
each benchmark on CUDA. Uses OUT_DIR/sft.pt for sampling if it exists (the lengths of
the answers depend on the weights, the speed per token does not).
"""

import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data.batching import (MAX_NEW_TOKENS, chat_batch, encode_rows, end_id, prompt_ids,
                           stream_batch, token_stream)
from data.pairs import offpolicy_pairs
from data.tokenizer import get_tokenizer
from data.world import eval_prompts, pretrain_lines
from losses import AnswerLogps, answer_logps, dpo_loss, sft_loss
from model import (GPT, AdaptersOff, GPTConfig, add_lora, get_device, load_checkpoint, sample,
                   sample_naive)
from plumbing.distributed import for_training
from plumbing.flags import check_bounds, flag, run_cli
from plumbing.loop import make_optimizer, optimizer_step
from plumbing import run
from plumbing.run import print_table, smoke_config


@dataclass
class BenchConfig:
    out_dir: str = flag("out", "folder holding sft.pt (optional, for the sampling rows)", "run")
    device: str = flag("auto", "cuda, mps or cpu (auto picks in that order)", "run")
    smoke: bool = flag(False, "every row once on a tiny model, for tests", "run")
    repeats: int = flag(5, "timed runs per row (the median is reported)", "run", at_least=1)
    steps: int = flag(10, "training steps per timed run", at_least=1)
    n_layer: int = flag(3, "transformer blocks (the default is train_sft.py's model)", "model",
                        at_least=1)
    n_embd: int = flag(96, "embedding width", "model", at_least=1)
    n_head: int = flag(4, "attention heads", "model", at_least=1)
    block_size: int = flag(64, "context length", "model", at_least=16)
    batch_size: int = flag(32, "rows (pretraining) or pairs (DPO) per step", at_least=1)
    prompts: int = flag(16, "prompts per sampling call", "sampling", at_least=1)
    num_generations: int = flag(8, "G: samples per prompt", "sampling", at_least=1)
    skip_naive: bool = flag(False, "leave out the naive sampler (slow on big models)",
                            "sampling")
    compile: bool = flag(False, "torch.compile the model for the training rows", "run")
    lora_rank: int = flag(8, "LoRA rank of the dpo step, LoRA row (alpha = 2 x rank)", "model",
                          at_least=1)

    def __post_init__(self):
        check_bounds(self)


SMOKE = dict(repeats=1, steps=1, n_layer=1, n_embd=32, n_head=2, batch_size=4, prompts=2,
             num_generations=2)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_runs(fn, device, repeats: int) -> list[float]:
    """Wall times of `repeats` runs of fn(), after one untimed warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, device, repeats: int) -> float:
    return statistics.median(timed_runs(fn, device, repeats))


def peak_memory_mb(device) -> float:
    """plumbing.run.peak_memory_mb, with the GPU's peak reset after each row (each row its own)."""
    mb = run.peak_memory_mb(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return mb


def matmul_peak(device, repeats: int) -> float:
    """FLOP/s of a large square matmul in the dtype training runs its matmuls in, from
    its fastest run: a peak (on a shared machine the median drifts with the neighbours'
    load; main measures it before and after the other rows and keeps the higher)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / min(timed_runs(lambda: a @ b, device, repeats))


def bench_training(cfg, model_cfg, device) -> dict:
    model = GPT(model_cfg).to(device)
    net = for_training(model, cfg.compile)
    opt = make_optimizer(model, 1e-3, 0.1, device)
    stream, starts = token_stream(pretrain_lines(5000, seed=0))
    rng = torch.Generator().manual_seed(0)

    def steps():
        for _ in range(cfg.steps):
            inputs, targets, positions, attn_mask = stream_batch(
                stream, starts, cfg.batch_size, cfg.block_size, rng, device)
            loss = sft_loss(net(inputs, positions, attn_mask), targets, None)
            loss.backward()
            optimizer_step(model, opt, 1.0)

    seconds = median_seconds(steps, device, cfg.repeats) / cfg.steps
    n = model.num_params() - model.wpe.weight.numel()
    flops_per_token = 6 * n + 12 * model_cfg.n_layer * model_cfg.n_embd * model_cfg.block_size
    tokens = cfg.batch_size * cfg.block_size
    return {"tokens/s": tokens / seconds, "GFLOP/s": flops_per_token * tokens / seconds / 1e9,
            "params (M)": model.num_params() / 1e6}


def bench_dpo(cfg, model_cfg, device, reference: str) -> dict:
    """DPO steps with the reference "precomputed", "live" (a frozen copy) or "lora"."""
    policy = GPT(model_cfg).to(device)
    ref_model = None
    if reference == "live":
        ref_model = copy.deepcopy(policy).requires_grad_(False)
    elif reference == "lora":
        ref_model = AdaptersOff(add_lora(policy, cfg.lora_rank, 2 * cfg.lora_rank))
    net = for_training(policy, cfg.compile)
    opt = make_optimizer(policy, 1e-4, 0.0, device)         # the parameters that train
    batch = encode_rows(offpolicy_pairs(eval_prompts(256), seed=0), model_cfg.block_size,
                        "bench pairs")[:cfg.batch_size]
    prompts, chosen, rejected = zip(*batch)
    inputs, targets, mask = chat_batch(prompts * 2, chosen + rejected, device)  # 2B rows

    def pair_logps(model) -> AnswerLogps:                 # (B, 2), as train_dpo.logps_of
        return answer_logps(model(inputs), targets, mask).as_pairs()
    with torch.no_grad():
        precomputed = pair_logps(policy)

    def steps():
        for _ in range(cfg.steps):
            ref = precomputed
            if ref_model is not None:
                with torch.no_grad():
                    ref = pair_logps(ref_model)
            logps = pair_logps(net)
            dpo_loss(logps.chosen.total, logps.rejected.total, ref.chosen.total,
                     ref.rejected.total)[0].mean().backward()
            optimizer_step(policy, opt, 1.0)

    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    return {"steps/s": cfg.steps / median_seconds(steps, device, cfg.repeats),
            "trainable (M)": trainable / 1e6}


def bench_sampling(cfg, device) -> dict:
    ckpt = Path(cfg.out_dir) / "sft.pt"
    model = load_checkpoint(ckpt, device)[0] if ckpt.exists() else \
        GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab)).to(device)
    model.eval()
    prompts = [prompt_ids(p) for p in eval_prompts(cfg.prompts)]
    rows = {}
    for name, sampler in [("kv cache", sample), ("naive", sample_naive)][:1 + (not cfg.skip_naive)]:
        rng = torch.Generator()

        def run():
            rng.manual_seed(0)
            return sampler(model, prompts, max_new_tokens=MAX_NEW_TOKENS, end_id=end_id(),
                           num_samples=cfg.num_generations, generator=rng)
        n_tokens = int(run()[1].sum())
        rows[f"sampling, {name}"] = {"tokens/s": n_tokens / median_seconds(
            run, device, cfg.repeats), "tokens": n_tokens}
    return rows


def main(cfg: BenchConfig) -> dict:
    if cfg.smoke:
        cfg = smoke_config(cfg, SMOKE)
    device = get_device(cfg.device)
    torch.manual_seed(0)
    model_cfg = GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=cfg.block_size,
                          n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    peak_before = matmul_peak(device, cfg.repeats)
    rows = {"matmul peak": {"peak MB": peak_memory_mb(device)}}
    for name, fn in [("train step", lambda: bench_training(cfg, model_cfg, device)),
                     ("dpo step", lambda: bench_dpo(cfg, model_cfg, device, "precomputed")),
                     ("dpo step, live ref", lambda: bench_dpo(cfg, model_cfg, device, "live")),
                     (f"dpo step, LoRA r={cfg.lora_rank}",
                      lambda: bench_dpo(cfg, model_cfg, device, "lora"))]:
        rows[name] = {**fn(), "peak MB": peak_memory_mb(device)}
    for name, row in bench_sampling(cfg, device).items():
        rows[name] = {**row, "peak MB": peak_memory_mb(device)}
    peak = max(peak_before, matmul_peak(device, cfg.repeats))
    rows["matmul peak"]["GFLOP/s"] = peak / 1e9
    rows["train step"]["MFU"] = rows["train step"]["GFLOP/s"] * 1e9 / peak
    if "sampling, naive" in rows:
        rows["sampling, kv cache"]["speedup"] = (rows["sampling, kv cache"]["tokens/s"] /
                                                 rows["sampling, naive"]["tokens/s"])
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print_table(rows, title=f"\nbench on {name}{threads}: {cfg.n_layer} layers x "
                            f"{cfg.n_embd}, block {cfg.block_size}, batch {cfg.batch_size}; "
                            f"sampling {cfg.prompts} prompts x G={cfg.num_generations}"
                            f"{', compiled' if cfg.compile else ''}")
    return rows


if __name__ == "__main__":
    run_cli(main, BenchConfig, __doc__)
