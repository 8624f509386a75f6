import json
import shutil

import pytest


@pytest.fixture(scope="session")
def sft_dir(tmp_path_factory):
    """A smoke pretraining + SFT run, shared by the tests that need a checkpoint:
    (out_dir, its final metrics)."""
    import train_sft
    from plumbing.flags import parse_config
    out = tmp_path_factory.mktemp("out")
    metrics = train_sft.main(parse_config(train_sft.SFTConfig, "", ["--smoke", "--out_dir",
                                                                    str(out)]))
    return out, metrics


@pytest.fixture(scope="session")
def rm_dir(sft_dir, tmp_path_factory):
    """A smoke reward model beside a copy of the smoke SFT checkpoint."""
    import train_rm
    from plumbing.flags import parse_config
    out = tmp_path_factory.mktemp("rlhf")
    shutil.copy(sft_dir[0] / "sft.pt", out / "sft.pt")
    train_rm.main(parse_config(train_rm.RMConfig, "", ["--smoke", "--out_dir", str(out),
                                                      "--max_steps", "40",
                                                      "--learning_rate", "1e-3"]))
    return out


@pytest.fixture
def dpo_smoke(sft_dir, tmp_path):
    """run(name, *flags, loss_fn=None): a --smoke train_dpo.py run from copies of the smoke
    checkpoints in tmp_path/name -> (eval metrics, its metrics log as rows, its folder)."""
    import train_dpo
    from plumbing.flags import parse_config

    def run(name, *flags, loss_fn=None):
        out = tmp_path / name
        out.mkdir()
        for file in ("pretrain.pt", "sft.pt"):
            shutil.copy(sft_dir[0] / file, out / file)
        cfg = parse_config(train_dpo.DPOConfig, "", ["--smoke", "--out_dir", str(out), *flags])
        metrics = train_dpo.main(cfg, loss_fn=loss_fn)
        log = (out / f"{cfg.loss}_metrics.jsonl").read_text().splitlines()
        return metrics, [json.loads(line) for line in log], out
    return run
