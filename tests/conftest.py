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
