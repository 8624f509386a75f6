"""sample.py answers prompts with a checkpoint, from arguments or standard input."""
import subprocess
import sys
from pathlib import Path

import sample
from model import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run(*args, stdin=""):
    done = subprocess.run([sys.executable, str(ROOT / "sample.py"), *map(str, args)], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def expected_output(ckpt, prompts, seed=0, **kwargs) -> str:
    """What sample.py must print: a header line, then each prompt and its answers, prompt i
    drawn with seed + i."""
    model = load_checkpoint(ckpt)[0].eval()
    lines = [f"{ckpt}: stage sft, {model.num_params() / 1e6:.2f}M parameters"]
    for i, p in enumerate(prompts):
        lines += [f"> {p}"] + [f"  {a}" for a in sample.answer(model, p, seed=seed + i, **kwargs)]
    return "\n".join(lines) + "\n"


def test_answers_each_prompt_as_generate_would(sft_dir):
    ckpt, prompts = sft_dir[0] / "sft.pt", ["What is 12 + 34?", "Reverse the digits of 123."]
    status, out, err = run(ckpt, *prompts, "--num_samples", "3", "--seed", "5")
    assert status == 0, err
    assert out == expected_output(ckpt, prompts, num_samples=3, seed=5)


def test_reads_prompts_from_standard_input_and_greedy_ignores_the_seed(sft_dir):
    ckpt, prompts = sft_dir[0] / "sft.pt", ["What is 12 + 34?", "Which is larger, 47 or 38?"]
    a = run(ckpt, "--greedy", stdin="What is 12 + 34?\n\nWhich is larger, 47 or 38?\n")
    b = run(ckpt, "--greedy", "--seed", "9", stdin="\n".join(prompts))
    assert a[0] == 0 and a[1] == b[1] == expected_output(ckpt, prompts, temperature=0.0)


def test_a_long_prompt_gets_room_to_answer_or_one_clear_line(sft_dir):
    ckpt = sft_dir[0] / "sft.pt"
    model = load_checkpoint(ckpt)[0]
    twenty = "What is 12 + 34? " * 3                          # with a 48-token answer: > 64
    assert len(sample.prompt_ids(twenty)) + sample.MAX_NEW_TOKENS > model.config.block_size
    status, out, err = run(ckpt, twenty)
    assert status == 0, err
    status, out, err = run(ckpt, "What is 12 + 34? " * 20)
    assert status == 1 and "leaving no room for an answer" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_a_missing_checkpoint_ends_in_one_clear_line(tmp_path):
    status, _, err = run(tmp_path / "nope.pt", "What is 1 + 2?")
    assert status == 1 and "nope.pt: no such checkpoint" in err and "Traceback" not in err


def test_each_prompt_draws_its_own_samples(sft_dir):
    ckpt = sft_dir[0] / "sft.pt"
    status, out, err = run(ckpt, "What is 12 + 34?", "What is 12 + 34?", "--num_samples", "4")
    assert status == 0, err
    _, first, second = out.split("> What is 12 + 34?\n")
    assert first != second                                   # the same question, new draws
    assert run(ckpt, "What is 12 + 34?", "What is 12 + 34?", "--num_samples", "4")[1] == out


def test_an_empty_prompt_is_skipped_and_an_unknown_one_is_flagged(sft_dir):
    ckpt = sft_dir[0] / "sft.pt"
    status, out, err = run(ckpt, "")
    assert status == 1 and "an empty prompt" in err and out == ""
    status, out, err = run(ckpt, "What is 12 + 34?", "", "Which is larger, 47 or 38?")
    assert status == 0, err
    assert "(prompt 2 is empty: skipped)" in out and out.count("> ") == 2
    model = load_checkpoint(ckpt)[0].eval()           # the third prompt draws with seed 0 + 2
    assert out.endswith("> Which is larger, 47 or 38?\n" + "".join(
        f"  {a}\n" for a in sample.answer(model, "Which is larger, 47 or 38?", seed=2)))
    status, out, err = run(ckpt, "Hello", "Waht is 47 + 38?", "What is 123 + 456?",
                           "What is 47 + 38?")
    assert status == 0 and out.count("(note: the model knows only") == 3
