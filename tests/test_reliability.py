"""Bad input ends in one clear line; checkpoints survive failures; runs resume exactly."""
import hashlib
import json
import os
import shutil
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_dpo
import train_sft
from plumbing import loop
from model import CheckpointError, load_checkpoint, save_checkpoint
from plumbing.flags import parse_config
from plumbing.loop import TrainingStopped

ROOT = Path(__file__).resolve().parents[1]


def cli(script, *args):
    """Run a script as a user would: (exit status, stderr)."""
    done = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done.returncode, done.stderr


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def eval_numbers(path) -> dict:
    """An eval file's computed numbers: not its timings, nor the process's peak memory."""
    return {k: v for k, v in json.loads(Path(path).read_text()).items()
            if "seconds" not in k and "memory" not in k}


def run_sft(out, *flags):
    return train_sft.main(parse_config(train_sft.SFTConfig, "", ["--smoke", "--out_dir", str(out),
                                                                 *flags]))


@pytest.fixture()
def bad_files(sft_dir, tmp_path):
    """A broken data file and broken checkpoints, each with the message it must produce."""
    out = sft_dir[0]
    bad_json = tmp_path / "pairs.jsonl"
    bad_json.write_text('{"prompt": "What is 1 + 2?", "chosen": "It is 3.", "rejected": "No."}\n'
                        '{"prompt": "What is 1 + 3?", "chosen": 4}\n')
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((out / "sft.pt").read_bytes()[:5000])
    misfit = tmp_path / "misfit.pt"
    ckpt = torch.load(out / "sft.pt", weights_only=True)
    ckpt["model_config"]["n_embd"] *= 2
    torch.save(ckpt, misfit)
    not_utf8 = tmp_path / "latin1.jsonl"
    not_utf8.write_bytes(b'{"prompt": "What is 1 + 2?", "chosen": "It is 3.", "rejected": "No."}\n'
                         b'{"prompt": "What is 1 + 3?", "chosen": "Caf\xe9 4.", "rejected": "No."}\n')
    ties = tmp_path / "ties.jsonl"
    ties.write_text('{"prompt": "What is 1 + 2?", "chosen": "It is 3.", "rejected": "It is 3."}\n')
    return {
        "data": (["--data", bad_json, "--init_from", out / "sft.pt"],
                 "pairs.jsonl:2: field 'chosen' must be a string"),
        "not UTF-8": (["--data", not_utf8, "--init_from", out / "sft.pt"],
                      "latin1.jsonl:2: not UTF-8 text (byte 0xe9 at column 44)"),
        "only ties": (["--data", ties, "--init_from", out / "sft.pt"],
                      "ties.jsonl: in every pair the chosen answer equals the rejected one"),
        "missing checkpoint": (["--init_from", tmp_path / "nope.pt"], "nope.pt: no such checkpoint"),
        "mistyped checkpoint": (["--init_from", tmp_path / "truncatd.pt"],
                                f"did you mean {tmp_path / 'truncated.pt'}?"),
        "no SFT model yet": (["--out_dir", tmp_path / "fresh"], "sft.pt: no such checkpoint; "
                             f"make it with `python train_sft.py --out_dir {tmp_path / 'fresh'}`"),
        "truncated checkpoint": (["--init_from", truncated], "truncated.pt: not a readable checkpoint"),
        "config misfit": (["--init_from", misfit], "misfit.pt: the weights do not fit"),
        "pretraining checkpoint": (["--init_from", out / "pretrain.pt"],
                                   "is a pretraining checkpoint"),
    }


@pytest.mark.parametrize("case", ["data", "not UTF-8", "only ties", "missing checkpoint",
                                  "mistyped checkpoint", "no SFT model yet",
                                  "truncated checkpoint", "config misfit",
                                  "pretraining checkpoint"])
def test_bad_files_end_in_one_clear_line(bad_files, case, tmp_path):
    flags, message = bad_files[case]
    status, err = cli("train_dpo.py", "--smoke", "--out_dir", tmp_path, *flags)
    assert status == 1 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize("flags,message", [
    (["--lr", "1e-3"], "unknown flag --lr: did you mean --learning_rate?"),   # other trainers'
    (["--betaa", "0.2"], "unknown flag --betaa: did you mean --beta?"),       # a typo
    (["--zzz=1"], "unknown flag --zzz (--help lists them all)"),
])
def test_an_unknown_flag_names_the_one_meant(flags, message):
    status, err = cli("train_dpo.py", *flags)
    assert status == 1 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize("script,flags,message", [
    ("train_dpo.py", ["--beta", "0"], "--beta must be > 0, got 0.0"),
    ("train_dpo.py", ["--learning_rate=-1e-4"], "--learning_rate must be > 0"),
    ("train_grpo.py", ["--num_generations", "1"], "--num_generations must be >= 2, got 1"),
    ("train_sft.py", ["--n_embd", "30"], "--n_embd 30 is not a multiple of --n_head 4"),
    ("train_dpo.py", ["--rounds", "100", "--num_prompts", "8"],
     "--rounds 100 is more rounds than --num_prompts 8"),
    ("train_dpo.py", ["--loss", "kto", "--rounds", "2"], "--rounds is iterative DPO's"),
    ("train_grpo.py", ["--advantage", "rloo", "--kl_in", "loss"],
     "--advantage rloo puts the KL in the reward"),
    # a flag the chosen mode ignores is refused, even at its default value
    ("train_grpo.py", ["--kl_in", "reward", "--kl_estimator", "k3"],
     "with --kl_in reward the KL is k1 summed over each answer: drop it"),
    ("train_grpo.py", ["--beta", "0", "--kl_estimator", "k2"], "with --beta 0 there is none"),
    ("train_grpo.py", ["--advantage", "best", "--scale_rewards", "group"],
     "there is nothing to scale; drop --scale_rewards"),
    ("train_grpo.py", ["--advantage", "rloo", "--scale_rewards", "group"],
     "--advantage rloo has a loss of its own"),
])
def test_bad_hyperparameters_end_in_one_clear_line(script, flags, message):
    status, err = cli(script, *flags)
    assert status == 1 and message in err and "Traceback" not in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_ends_in_one_clear_line():
    status, err = cli("train_grpo.py", "--device", "cuda")
    assert status == 1 and "--device cuda is not available" in err and "Traceback" not in err


def test_a_failed_save_keeps_the_old_checkpoint(sft_dir, tmp_path, monkeypatch):
    path = tmp_path / "sft.pt"
    shutil.copy(sft_dir[0] / "sft.pt", path)
    before = digest(path)
    model, _ = load_checkpoint(path)

    def save_half_then_fail(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError):
        save_checkpoint(path, model, {}, 0)
    assert digest(path) == before and list(tmp_path.iterdir()) == [path]


@pytest.fixture(params=[False, True], ids=["read every step", "read lazily"])
def lazy(request, monkeypatch):
    """Both ways TrainingRun reads metrics back: every step (CPU), and now and then (GPU)."""
    monkeypatch.setattr(loop, "reads_lazily", lambda device: request.param)


def test_interrupt_then_resume_ends_with_the_same_weights(sft_dir, tmp_path, monkeypatch, lazy):
    """Ctrl-C (a real SIGINT) during pretraining step 7 saves a state after that step;
    --resume finishes both stages with the weights and evaluation of a run that was never
    interrupted."""
    optimizer_step, calls = train_sft.optimizer_step, []

    def interrupt_in_step_7(*args):
        calls.append(1)
        if len(calls) == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return optimizer_step(*args)
    monkeypatch.setattr(train_sft, "optimizer_step", interrupt_in_step_7)
    with pytest.raises(TrainingStopped) as stopped:
        run_sft(tmp_path)
    assert stopped.value.status == 130 and "--resume" in str(stopped.value)
    assert torch.load(tmp_path / "pretrain_state.pt", weights_only=True)["step"] == 8
    assert not (tmp_path / "pretrain.pt").exists()
    monkeypatch.setattr(train_sft, "optimizer_step", optimizer_step)
    run_sft(tmp_path, "--resume")
    uninterrupted, resumed = (load_checkpoint(d / "sft.pt")[0].state_dict()
                              for d in (sft_dir[0], tmp_path))
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    assert eval_numbers(tmp_path / "sft_eval.json") == eval_numbers(sft_dir[0] / "sft_eval.json")
    steps = [json.loads(l)["step"] for l in (tmp_path / "pretrain_metrics.jsonl").open()]
    assert steps == list(range(len(steps)))                    # no step logged twice


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(sft_dir, tmp_path,
                                                                       monkeypatch, lazy):
    for name in ("pretrain.pt", "sft.pt"):
        shutil.copy(sft_dir[0] / name, tmp_path / name)
    before = digest(tmp_path / "sft.pt")
    calls, sft_loss = [], train_sft.sft_loss

    def nan_at_step_3(*args):                       # one call per step (grad_accum 1)
        calls.append(1)
        return sft_loss(*args) * (float("nan") if len(calls) == 4 else 1.0)
    monkeypatch.setattr(train_sft, "sft_loss", nan_at_step_3)
    with pytest.raises(TrainingStopped, match=r"sft: the loss is nan at step 3"):
        run_sft(tmp_path, "--stage", "sft")
    assert digest(tmp_path / "sft.pt") == before
    logged = [json.loads(l) for l in (tmp_path / "sft_metrics.jsonl").open()]
    assert [m["step"] for m in logged] == [0, 1, 2]               # the good steps, as numbers
    assert all(isinstance(m["loss"], float) and m["tok/s"] > 0 for m in logged)


def test_the_same_seed_gives_the_same_numbers(sft_dir, tmp_path):
    runs = []
    for k in range(2):
        out = tmp_path / str(k)
        out.mkdir()
        shutil.copy(sft_dir[0] / "sft.pt", out / "sft.pt")
        runs.append(train_dpo.main(parse_config(train_dpo.DPOConfig, "", [
            "--smoke", "--out_dir", str(out)])))
    # every computed number; not what the machine measured (time, the process's peak memory)
    a, b = (json.dumps({k: v for k, v in r.items() if "seconds" not in k and "memory" not in k})
            for r in runs)
    assert a == b                                            # (as text: nan == nan)
    a, b = (load_checkpoint(tmp_path / k / "dpo.pt")[0].state_dict() for k in "01")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_errors_are_value_errors(tmp_path):
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    assert issubclass(CheckpointError, ValueError)       # so run_cli prints one line


@pytest.mark.parametrize("script", ["train_sft.py", "train_dpo.py", "train_grpo.py", "train_rm.py",
                                    "train_ppo.py"])
def test_an_out_dir_that_is_a_file_ends_in_one_clear_line(script, tmp_path):
    (tmp_path / "out.txt").write_text("not a folder")
    status, err = cli(script, "--smoke", "--out_dir", tmp_path / "out.txt")
    assert status == 1 and "out.txt is a file, not a folder" in err and "Traceback" not in err


def test_an_init_from_folder_ends_in_one_clear_line(tmp_path):
    status, err = cli("train_dpo.py", "--smoke", "--out_dir", tmp_path, "--init_from", tmp_path)
    assert status == 1 and "is a folder, not a checkpoint file" in err and "Traceback" not in err


def test_a_jsonl_file_with_a_byte_order_mark_is_read(tmp_path):
    from data.batching import read_jsonl
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "What is 1 + 2?", "completion": "It is 3."}\n', encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert read_jsonl(path, ("prompt", "completion")) == [
        {"prompt": "What is 1 + 2?", "completion": "It is 3."}]


def test_a_run_with_other_settings_does_not_replace_the_last_ones_checkpoint(sft_dir, tmp_path):
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    flags = ["--smoke", "--out_dir", tmp_path, "--max_steps", "2"]
    assert cli("train_dpo.py", *flags)[0] == 0
    assert cli("train_dpo.py", *flags)[0] == 0                        # the same command: fine
    before = digest(tmp_path / "dpo.pt")
    status, err = cli("train_dpo.py", *flags, "--beta", "0.5")
    assert status == 1 and "dpo.pt was written by a run with other settings (--beta 0.1 -> 0.5)" \
        in err and "--overwrite" in err and "Traceback" not in err
    assert digest(tmp_path / "dpo.pt") == before
    # the advice is a command that runs: its own folder, the SFT model it needs named
    advice = next(line.strip() for line in err.splitlines()
                  if line.startswith("    ") and "train_dpo.py" in line)
    python, script, *args = shlex.split(advice)
    assert python == ".venv/bin/python" if (ROOT / ".venv") in Path(sys.executable).parents \
        else python.endswith("python")           # the interpreter the README's commands name
    assert f"--init_from {tmp_path / 'sft.pt'}" in advice
    assert cli(script, *args)[0] == 0
    assert torch.load(tmp_path / "beta0.5" / "dpo.pt", weights_only=True)["train_config"]["beta"] \
        == 0.5
    assert cli("train_dpo.py", *flags, "--beta", "0.5", "--overwrite")[0] == 0
    assert torch.load(tmp_path / "dpo.pt", weights_only=True)["train_config"]["beta"] == 0.5


def test_the_checklist_drops_ties_and_warns_of_too_little_data(capsys):
    from data.pairs import checklist
    pairs = [{"prompt": "What is 1 + 2?", "chosen": "It is 3.", "rejected": "Not sure, maybe 4."},
             {"prompt": "What is 2 + 2?", "chosen": "It is 4.", "rejected": "It is 4."}] * 2
    kept = checklist(pairs, steps=150, batch_size=32, source="mine.jsonl")
    out = capsys.readouterr().out
    assert kept == pairs[:1] * 2 and "mine.jsonl: dropped 2 of 4 pairs" in out
    assert "see each of the 2 rows about 2400 times: too little data" in out
    checklist(pairs * 400, steps=150, batch_size=32, source="many")   # 800 kept: 6 times each
    assert "too little data" not in capsys.readouterr().out


def test_setting_beta_on_best_against_worst_labels_says_what_shows_its_trade(sft_dir, tmp_path):
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    done = subprocess.run([sys.executable, str(ROOT / "train_dpo.py"), "--smoke", "--out_dir",
                           str(tmp_path), "--max_steps", "3", "--beta", "0.5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "beta acts only through saturation" in done.stdout
    assert "--label_temperature 0.1 --rpo_alpha 0" in done.stdout
    assert "dpo step 0/3 | loss" in done.stdout and "| dpo_loss 0.6931 | nll_loss" in done.stdout
    # in a log (no terminal: no bar), each line says how far the run is and what is left
    assert "dpo step 2/3, about 0m00s left | loss" in done.stdout


@pytest.mark.parametrize("script,text,message", [
    ("experiments/compare.py", None, "no such file"),
    ("experiments/compare.py", "nope", "not JSON"),
    ("experiments/compare.py", '{"a": 1}', "not a compare.json of this version"),
    ("notebooks/execute.py", None, "no such notebook"),
    ("notebooks/execute.py", "nope", "not a Jupyter notebook"),
])
def test_an_entry_point_given_a_bad_file_ends_in_one_line(tmp_path, script, text, message):
    path = tmp_path / "given"
    if text is not None:
        path.write_text(text)
    args = ["--report", path] if script.endswith("compare.py") else [path]
    status, err = cli(script, *args)
    assert status == 1 and f"{path}: {message}" in err and "Traceback" not in err, err
