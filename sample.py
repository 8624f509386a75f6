"""Answer prompts with any checkpoint the scripts write (pretrain, sft, dpo, grpo, ...).

    python sample.py out/sft.pt "What is 47 + 38?"
    python sample.py out/dpo.pt "What is 47 + 38?" --num_samples 4
    printf 'What is 12 + 34?\\nReverse the digits of 472.\\n' | python sample.py out/grpo.pt --greedy

Each answer is sampled with the KV cache (model.sample) at --temperature, or greedily,
and ends at the end token or when the model's context is full; prompt i of a call (from 0)
draws with seed --seed + i, so each prompt has draws of its own and a call is reproducible.
The models know only the toy world's four question forms, with the numbers of its difficulty
(2 digits; 3 to reverse); a prompt of another form is answered anyway, with a note, and its
answers mean nothing. An empty prompt is skipped, with a note.
"""

import argparse
import sys

from data.batching import MAX_NEW_TOKENS, prompt_ids
from data.world import QUESTION_FORMS, is_known_form
from evaluation import generate
from model import get_device, load_checkpoint
from plumbing.flags import examples


def answer(model, prompt: str, num_samples: int = 1, temperature: float = 1.0,
           seed: int = 0) -> list[str]:
    """num_samples answers to one prompt; ValueError if it leaves no room in the context."""
    n_tokens, block_size = len(prompt_ids(prompt)), model.config.block_size
    if n_tokens >= block_size:
        raise ValueError(f"the prompt {prompt[:40]!r} is {n_tokens} tokens with its chat "
                         f"tokens; the model's context is {block_size}, leaving no room "
                         "for an answer")
    answers, _ = generate(model, [prompt], temperature=temperature, num_samples=num_samples,
                          seed=seed, max_new_tokens=min(MAX_NEW_TOKENS, block_size - n_tokens))
    return answers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=examples(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .pt file a training script wrote")
    parser.add_argument("prompts", nargs="*", help="questions to answer (default: read "
                                                   "standard input, one a line)")
    parser.add_argument("--num_samples", type=int, default=1, help="answers per prompt "
                                                                   "(default: 1)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature "
                                                                       "(default: 1.0)")
    parser.add_argument("--greedy", action="store_true", help="the most likely token at each "
                                                              "step (temperature 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; prompt i of the call "
                        "(from 0) draws with seed + i (default: 0)")
    parser.add_argument("--device", default="auto", help="cuda, mps or cpu (default: auto)")
    args = parser.parse_args(argv)
    if args.num_samples < 1 or args.temperature < 0:
        parser.error("--num_samples must be >= 1 and --temperature >= 0")
    model, ckpt = load_checkpoint(args.checkpoint, get_device(args.device))
    prompts = args.prompts or [line.strip() for line in sys.stdin if line.strip()]
    if not any(p.strip() for p in prompts):
        raise ValueError(f"no prompt to answer (an empty prompt); ask one of the toy world's "
                         f"questions, such as {QUESTION_FORMS[0]!r}")
    print(f"{args.checkpoint}: stage {ckpt.get('stage', '?')}, "
          f"{model.num_params() / 1e6:.2f}M parameters")
    for i, prompt in enumerate(prompts):
        if not prompt.strip():
            print(f"(prompt {i + 1} is empty: skipped)")
            continue
        print(f"> {prompt}")
        if not is_known_form(prompt):
            print("  (note: the model knows only " + ", ".join(f'"{q}"' for q in QUESTION_FORMS) +
                  ", with the digits of these examples (2 digits; 3 to reverse); it answers this "
                  "anyway, and the answer means nothing)")
        for text in answer(model.eval(), prompt, args.num_samples,
                           0.0 if args.greedy else args.temperature, args.seed + i):
            print(f"  {text}")


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:                # a bad checkpoint, a prompt empty or too long
        sys.exit(f"error: {e}")
