import pytest
import torch

from model import GPT, GPTConfig, load_checkpoint, sample, sample_naive, save_checkpoint

CFG = GPTConfig(vocab_size=16, block_size=40, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(CFG).eval()


def test_forward_gives_logits_at_every_position(model):
    idx = torch.randint(16, (3, 10))
    assert model(idx).shape == (3, 10, 16)


def test_causal_future_token_does_not_change_earlier_logits(model):
    idx = torch.randint(16, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 16
    a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-4)


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11], [3, 3, 5, 7, 1]]  # different lengths


@pytest.mark.parametrize("temperature,top_k,num_samples", [
    (0.0, None, 1), (1.0, None, 1), (1.0, None, 4), (0.8, 5, 3)])
def test_kv_cache_sampling_equals_naive(model, temperature, top_k, num_samples):
    kwargs = dict(max_new_tokens=25, end_id=0, temperature=temperature, top_k=top_k,
                  num_samples=num_samples)
    fast = sample(model, PROMPTS, generator=torch.Generator().manual_seed(7), **kwargs)
    slow = sample_naive(model, PROMPTS, generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(fast[0], slow[0])
    assert torch.equal(fast[1], slow[1])
    assert fast[0].shape[0] == len(PROMPTS) * num_samples


def test_mask_covers_sampled_tokens_up_to_first_end(model):
    tokens, mask = sample(model, PROMPTS, max_new_tokens=30, end_id=0, num_samples=8,
                          generator=torch.Generator().manual_seed(1))
    assert (tokens == 0).any(), "test needs some rows that stop"
    for row, m in zip(tokens.tolist(), mask.tolist()):
        n = row.index(0) + 1 if 0 in row else len(row)
        assert m == [True] * n + [False] * (len(row) - n)


def test_samples_in_a_group_differ_and_share_the_prompt(model):
    tokens, _ = sample(model, [[1, 2, 3]], max_new_tokens=10, end_id=0, num_samples=8,
                       generator=torch.Generator().manual_seed(3))
    assert len({tuple(r) for r in tokens.tolist()}) > 1


def test_prompt_too_long_is_refused(model):
    with pytest.raises(ValueError, match="block_size"):
        sample(model, [[1] * 30], max_new_tokens=20, end_id=0)


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, model, {"lr": 0.1}, step=5, stage="sft")
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["step"] == 5 and ckpt["train_config"] == {"lr": 0.1} and ckpt["stage"] == "sft"
    assert loaded.config == model.config
    idx = torch.randint(16, (2, 8))
    assert torch.equal(loaded.eval()(idx), model(idx))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
