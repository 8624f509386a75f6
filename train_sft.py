"""Stage 1: pretraining on raw toy-world text. Stage 2: supervised fine-tuning on chat rows.

    python train_sft.py                  # both stages, then the evaluation table
    python train_sft.py --stage sft      # SFT only, from out/pretrain.pt
    python train_sft.py --smoke --out_dir out/smoke   # a few seconds end to end

Pretraining: next-token loss on every token of the world's plain text (questions
and their answers, see data.world.pretrain_lines), whole lines packed into rows
of block_size tokens, each line attending only to itself and counting its
positions from its own start.
Held-out arithmetic is learned late, in a jump whose timing varies with the seed:
every --jump_every steps the model completes 256 held-out questions as plain text
("What is 47 + 38? It is", greedy), the share right goes to the metrics file
(heldout/all, per task heldout/add, ...), and "the jump" is the first step at which
it reaches JUMP_AT. A draw whose jump comes late, or whose SFT model falls short of
the bars in STRONG, gets a warning that says what to do (docs/results.md, "How the
defaults were chosen", measures the recipe over 13 draws).
SFT: the same loss on chat rows, counted only on completion tokens (the end
token included): the model learns the format and the mixture of personas, and so
learns to be rude, careless or refusing at the data's rates. That is on purpose:
it gives DPO and GRPO something to align away.

Writes out/pretrain.pt, out/sft.pt, out/sft_eval.json, out/sft_samples.jsonl,
out/pretrain_metrics.jsonl and out/sft_metrics.jsonl.
"""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from data.batching import chat_batch, encode_rows, read_jsonl, stream_batch, token_stream
from data.tokenizer import get_tokenizer
from data.world import eval_prompts, pretrain_lines, sft_rows
from evaluation import evaluate, plain_text_accuracy
from losses import sft_loss
from model import GPT, GPTConfig, load_checkpoint, save_checkpoint
from plumbing.distributed import for_training, grad_sync, is_main, shard
from plumbing.flags import RunConfig, flag, run_cli
from plumbing.loop import TrainingRun, make_optimizer, optimizer_step, set_lr
from plumbing.run import finish, interpreter, start_run


@dataclass
class SFTConfig(RunConfig):
    stage: str = flag("all", "pretrain, sft, or all (pretrain then sft)", "method",
                      choices=["pretrain", "sft", "all"])
    init_from: str = flag("", "checkpoint SFT starts from (default: OUT_DIR/pretrain.pt); "
                              "'scratch' for a fresh model", "model")
    n_layer: int = flag(3, "transformer blocks", "model", at_least=1)
    n_head: int = flag(4, "attention heads", "model", at_least=1)
    n_embd: int = flag(96, "embedding width (a multiple of n_head)", "model", at_least=1)
    block_size: int = flag(64, "context length in tokens", "model", at_least=16)
    data: str = flag("", "SFT JSONL of {prompt, completion} rows (default: generated)", "data")
    digits: int = flag(2, "difficulty: digits of each operand", "data", at_least=1)
    pretrain_lines: int = flag(200_000, "lines of generated pretraining text", "data",
                               at_least=1)
    sft_rows: int = flag(50_000, "generated SFT rows (ignored with --data)", "data", at_least=1)
    pretrain_steps: int = flag(9000, "pretraining steps", at_least=0)
    sft_steps: int = flag(600, "SFT steps", at_least=0)
    pretrain_batch_size: int = flag(16, "windows of block_size tokens per pretraining "
                                        "micro-batch", at_least=1)
    batch_size: int = flag(32, "chat rows per SFT micro-batch", at_least=1)
    grad_accum: int = flag(1, "micro-batches per optimizer step", at_least=1)
    learning_rate: float = flag(3e-3, "peak learning rate (AdamW)", above=0)
    sft_learning_rate: float = flag(1e-3, "peak learning rate for SFT", above=0)
    warmup_steps: int = flag(50, "linear warmup steps", at_least=0)
    weight_decay: float = flag(0.1, "AdamW weight decay on matrices", at_least=0)
    jump_every: int = flag(250, "every this many pretraining steps, log the share of held-out "
                                "questions answered right as plain text; 0: never",
                           "evaluation", at_least=0)

    def inputs(self) -> dict[str, str]:
        return {"init_from": "pretrain.pt"} if self.stage == "sft" else {}

    def __post_init__(self):
        super().__post_init__()
        if self.n_embd % self.n_head:
            raise ValueError(f"--n_embd {self.n_embd} is not a multiple of --n_head {self.n_head}")


SMOKE = dict(n_layer=1, n_head=2, n_embd=32, pretrain_lines=2000, sft_rows=500,
             pretrain_steps=20, sft_steps=20, pretrain_batch_size=16, batch_size=16,
             eval_prompts=16, jump_every=10)
JUMP_AT = 0.9                 # held-out questions right as plain text: past it, "the jump"
JUMP_PROMPTS = 256            # how many (a share of 0.9 has a standard error of 0.02)
STRONG = {"accuracy_greedy": 0.98, "answer_skill": 0.97}   # what every default draw clears
JUMP_BY = 2 / 3               # ... with its jump by this share of pretraining


def train(model, cfg: SFTConfig, name: str, next_batch, rng, steps: int, peak_lr: float,
          device, probe=None) -> None:
    """The loop both stages share: AdamW, warmup + cosine, grad accumulation and clipping.
    next_batch() -> (inputs, targets, loss mask or None, positions, attention mask);
    probe(model) -> metrics, logged every cfg.jump_every steps and at the last."""
    opt = make_optimizer(model, peak_lr, cfg.weight_decay, device)
    net = for_training(model.train(), cfg.compile)
    with TrainingRun(name, cfg, model, opt, rng, steps, log_every=100) as run:
        for step in range(run.start, steps):
            lr = set_lr(opt, step, steps, cfg.warmup_steps, peak_lr)
            tokens, total = 0, 0.0
            for micro in range(cfg.grad_accum):
                inputs, targets, mask, positions, attn_mask = next_batch()
                with grad_sync(net, now=micro == cfg.grad_accum - 1):
                    logits = net(inputs, positions, attn_mask)               # (B, T, V)
                    loss = sft_loss(logits, targets, mask) / cfg.grad_accum
                    loss.backward()
                tokens, total = tokens + inputs.numel(), total + loss.detach()
            grad_norm = optimizer_step(model, opt, cfg.grad_clip)
            metrics = {"loss": total, "lr": lr, "grad_norm": grad_norm, "tokens": tokens}
            if probe and cfg.jump_every and ((step + 1) % cfg.jump_every == 0 or step + 1 == steps):
                metrics |= probe(model)
                run.bar.write(f"{name} step {step + 1}/{steps}: held-out questions right " +
                              " ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in metrics.items()
                                       if k.startswith("heldout/")))
            run.log(step, metrics)


def new_model(cfg: SFTConfig, device) -> GPT:
    return GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=cfg.block_size,
                         n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)).to(device)


def pretrain(cfg: SFTConfig, device) -> GPT:
    lines = pretrain_lines(cfg.pretrain_lines, seed=cfg.seed, digits=cfg.digits)
    stream, starts = token_stream(lines)
    rng = torch.Generator().manual_seed(cfg.seed)
    model = new_model(cfg, device)
    print(f"pretraining a {model.num_params() / 1e6:.2f}M-parameter GPT on "
          f"{len(lines):,} lines, {len(stream):,} tokens")

    def next_batch():  # every token is a target: loss mask None
        inputs, targets, positions, attn_mask = (shard(t) for t in stream_batch(
            stream, starts, cfg.pretrain_batch_size, cfg.block_size, rng, device))
        return inputs, targets, None, positions, attn_mask

    questions = eval_prompts(JUMP_PROMPTS, digits=cfg.digits)
    train(model, cfg, "pretrain", next_batch, rng, cfg.pretrain_steps, cfg.learning_rate, device,
          probe=lambda m: plain_text_accuracy(m, questions))
    if is_main():
        save_checkpoint(Path(cfg.out_dir) / "pretrain.pt", model, asdict(cfg), cfg.pretrain_steps,
                        stage="pretrain")
    return model


def supervised_finetune(cfg: SFTConfig, device, model: GPT | None) -> GPT:
    if cfg.init_from == "scratch":
        model = new_model(cfg, device)
    elif model is None or cfg.init_from:
        model, _ = load_checkpoint(cfg.init_from or Path(cfg.out_dir) / "pretrain.pt", device)
    rows = read_jsonl(cfg.data, ("prompt", "completion")) if cfg.data else \
        sft_rows(cfg.sft_rows, seed=cfg.seed + 1, digits=cfg.digits)
    rows = encode_rows(rows, model.config.block_size,
                       cfg.data or "generated SFT rows")                  # (prompt, completion) ids
    rng = torch.Generator().manual_seed(cfg.seed + 1)
    print(f"SFT on {len(rows):,} rows")

    def next_batch():
        idx = shard(torch.randint(len(rows), (cfg.batch_size,), generator=rng).tolist())
        return *chat_batch([rows[i][0] for i in idx], [rows[i][1] for i in idx], device), \
            None, None  # rows start at position 0, plain causal attention

    train(model, cfg, "sft", next_batch, rng, cfg.sft_steps, cfg.sft_learning_rate, device)
    if is_main():
        save_checkpoint(Path(cfg.out_dir) / "sft.pt", model, asdict(cfg), cfg.sft_steps,
                        stage="sft")
    return model


def the_jump(metrics_path: Path) -> tuple[int | None, int | None]:
    """(the first pretraining step whose held-out questions were right at least JUMP_AT of the
    time, the steps pretraining ran), from its metrics file; (None, steps) if it never got
    there, (None, None) if nothing was measured (no file, or --jump_every 0)."""
    if not metrics_path.exists():
        return None, None
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    probed = [(r["step"] + 1, r["heldout/all"]) for r in rows if "heldout/all" in r]
    if not probed:
        return None, None
    return next((step for step, right in probed if right >= JUMP_AT), None), rows[-1]["step"] + 1


def weak_draw(metrics: dict, jump: int | None, steps: int | None, cfg: SFTConfig) -> str | None:
    """A warning naming what falls short when this SFT model misses a bar every default draw
    clears (STRONG, and the jump by JUMP_BY of pretraining), with what to do; None if none."""
    short = [f"{name} {metrics[name]:.3f} (bar {bar})" for name, bar in STRONG.items()
             if metrics[name] < bar]
    if steps and (jump is None or jump > JUMP_BY * steps):
        short.append(f"held-out questions passed {JUMP_AT} " +
                     (f"only at pretraining step {jump} of {steps}" if jump else "at no step") +
                     f" (bar: by step {int(JUMP_BY * steps)})")
    if not short:
        return None
    return (f"warning: a weak draw: {'; '.join(short)}, on {cfg.eval_prompts} held-out prompts. "
            "Every later stage starts from this model and inherits its mistakes. Train longer:\n"
            f"  {interpreter()} train_sft.py --seed {cfg.seed} --pretrain_steps "
            f"{int(1.5 * cfg.pretrain_steps)} --out_dir {cfg.out_dir} --overwrite\n"
            f"or draw another seed (--seed {cfg.seed + 1}).")


def main(cfg: SFTConfig) -> dict:
    outputs = {"pretrain": ["pretrain.pt"], "sft": ["sft.pt"], "all": ["pretrain.pt", "sft.pt"]}
    cfg, device, memory_at_start = start_run(cfg, SMOKE, outputs[cfg.stage])
    t0 = time.time()
    model = pretrain(cfg, device) if cfg.stage in ("pretrain", "all") else None
    if cfg.stage == "pretrain":
        return {"seconds_total": time.time() - t0}
    model = supervised_finetune(cfg, device, model)
    train_seconds = time.time() - t0
    if not is_main():
        return {}
    print(f"evaluating the SFT model on {cfg.eval_prompts} held-out prompts ...", flush=True)
    metrics, _, _ = evaluate(model, eval_prompts(cfg.eval_prompts, digits=cfg.digits),
                             seed=cfg.seed, samples_path=Path(cfg.out_dir) / "sft_samples.jsonl")
    # SFT started from OUT_DIR/pretrain.pt, whose metrics file lies beside it, unless --init_from
    jump, steps = (None, None) if cfg.init_from else \
        the_jump(Path(cfg.out_dir) / "pretrain_metrics.jsonl")
    if jump:
        metrics["jump_step"] = jump
    metrics = finish(cfg.out_dir, "sft", {"sft": metrics},
                     f"\nSFT model on {cfg.eval_prompts} held-out prompts",
                     train_seconds=train_seconds, device=device, memory_at_start=memory_at_start)
    warning = None if cfg.smoke else weak_draw(metrics, jump, steps, cfg)
    if warning:
        print(warning)
    return metrics


if __name__ == "__main__":
    run_cli(main, SFTConfig, __doc__)
