"""When does pretraining learn the arithmetic? Held-out accuracy per task, every few steps.

    python experiments/tools/probe_pretraining.py --seed 2 --batch_size 32 --steps 2000   # the old default
    python experiments/tools/probe_pretraining.py --seed 2 --batch_size 16 --steps 4000   # same tokens

Pretrains as train_sft.py's first stage does (same data, packing, AdamW, warmup and
cosine schedule; the model at its defaults) and, every --every steps, completes each
of 256 held-out questions as plain text, "What is 47 + 38? It is", greedily, and
prints the share answered right, per task and overall. This is how the README's
"Numbers that hold" found that the weak seeds were short of a late jump in
accuracy, and that the number of steps sets it, hardly the batch size.
"""

import argparse
import time

import torch

from data.batching import end_id, stream_batch, token_stream
from data.tokenizer import get_tokenizer
from data.world import eval_prompts, parse_prompt, pretrain_lines
from losses import sft_loss
from model import sample
from plumbing.loop import make_optimizer, optimizer_step, set_lr
from plumbing.run import set_seed
from train_sft import SFTConfig, new_model


def plain_text_accuracy(model, prompts: list[str]) -> dict[str, float]:
    """Greedy completions of '<prompt> It is': the share right, per task kind and 'all'."""
    tok = get_tokenizer()
    ids = [[end_id()] + tok.encode_ordinary(p + " It is") for p in prompts]
    model.eval()
    tokens, _ = sample(model, ids, max_new_tokens=6, end_id=end_id(), temperature=0.0)
    model.train()
    right: dict[str, list[bool]] = {}
    for prompt, row in zip(prompts, tokens.tolist()):
        answer = tok.decode([t for t in row if t != end_id()]).split(".")[0].strip()
        task = parse_prompt(prompt)
        right.setdefault(task.kind, []).append(answer == task.answer)
    acc = {kind: sum(r) / len(r) for kind, r in right.items()}
    acc["all"] = sum(map(sum, right.values())) / len(prompts)
    return acc


def main() -> None:
    defaults = SFTConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=defaults.pretrain_steps)
    parser.add_argument("--batch_size", type=int, default=defaults.pretrain_batch_size)
    parser.add_argument("--learning_rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--every", type=int, default=250, help="evaluate every this many steps")
    args = parser.parse_args()

    set_seed(args.seed)
    stream, starts = token_stream(pretrain_lines(defaults.pretrain_lines, seed=args.seed))
    rng = torch.Generator().manual_seed(args.seed)
    model = new_model(defaults, torch.device("cpu"))
    opt = make_optimizer(model, args.learning_rate, defaults.weight_decay, torch.device("cpu"))
    prompts, t0 = eval_prompts(256), time.time()
    for step in range(args.steps):
        set_lr(opt, step, args.steps, defaults.warmup_steps, args.learning_rate)
        inputs, targets, positions, attn_mask = stream_batch(stream, starts, args.batch_size,
                                                             defaults.block_size, rng)
        sft_loss(model(inputs, positions, attn_mask), targets, None).backward()
        optimizer_step(model, opt, defaults.grad_clip)
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            acc = plain_text_accuracy(model, prompts)
            print(f"seed {args.seed} step {step + 1}: " +
                  "  ".join(f"{k} {v:.3f}" for k, v in acc.items()) +
                  f"  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
