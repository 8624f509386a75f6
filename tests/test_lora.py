"""LoRA (model.py): the adapted model starts as the base, the adapters-off forward is the
base, merging changes nothing, and only the adapters train."""
import copy

import pytest
import torch

from losses import sft_loss
from model import GPT, GPTConfig, LoRALinear, adapters_off, add_lora, merged

CFG = GPTConfig(vocab_size=64, block_size=24, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture
def models():
    """(base GPT, a deep copy of it with rank-4 adapters on every block Linear)."""
    torch.manual_seed(0)
    base = GPT(CFG)
    return base, add_lora(copy.deepcopy(base), rank=4, alpha=8)


def train_a_few_steps(model, steps=5):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx, targets = torch.randint(CFG.vocab_size, (2, 4, 12), generator=g).unbind(0)
        sft_loss(model(idx), targets).backward()
        opt.step()
        opt.zero_grad()


def test_every_block_linear_is_adapted_and_the_rest_is_frozen(models):
    _, lora = models
    adapted = [n for n, m in lora.named_modules() if isinstance(m, LoRALinear)]
    assert len(adapted) == 4 * CFG.n_layer
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A" in n or ".lora_B" in n for n in trainable)
    # rank 4: A (4, in) and B (out, 4) for qkv (16 -> 48), proj (16 -> 16), mlp (16 -> 64 -> 16)
    per_block = 4 * (16 + 48) + 4 * (16 + 16) + 4 * (16 + 64) + 4 * (64 + 16)
    assert sum(lora.get_parameter(n).numel() for n in trainable) == CFG.n_layer * per_block


def test_at_initialisation_the_lora_model_is_the_base_model(models):
    base, lora = models
    idx = torch.randint(CFG.vocab_size, (3, 20))
    assert torch.equal(lora(idx), base(idx))                  # B = 0: the update is exactly 0


def test_only_the_adapters_receive_gradients(models):
    _, lora = models
    idx, targets = torch.randint(CFG.vocab_size, (2, 3, 10)).unbind(0)
    sft_loss(lora(idx), targets).backward()
    for name, p in lora.named_parameters():
        if ".lora_" in name:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    # at B = 0 the gradient reaches B (dL/dB = dL/dh (A x)^T), not A (dL/dA = B^T ...)
    layer = lora.blocks[0].attn.qkv
    assert layer.lora_B.grad.abs().sum() > 0 and layer.lora_A.grad.abs().sum() == 0


def test_after_training_adapters_off_is_the_base_and_on_is_not(models):
    base, lora = models
    train_a_few_steps(lora)
    idx = torch.randint(CFG.vocab_size, (3, 20))
    with adapters_off(lora):
        off = lora(idx)
    assert torch.equal(off, base(idx))                        # the frozen base, bit for bit
    assert (lora(idx) - base(idx)).abs().max() > 1e-3         # the adapters changed the policy
    assert all(m.enabled for m in lora.modules() if isinstance(m, LoRALinear))   # restored


def test_merged_and_unmerged_forwards_agree(models):
    _, lora = models
    train_a_few_steps(lora)
    plain = merged(lora)
    assert type(plain) is GPT and not any(isinstance(m, LoRALinear) for m in plain.modules())
    idx = torch.randint(CFG.vocab_size, (3, 20))
    assert torch.allclose(plain(idx), lora(idx), atol=1e-5)
    # h = W0 x + (alpha / r) B A x, by hand for one layer
    layer = lora.blocks[1].mlp[0]
    x = torch.randn(5, 16)
    by_hand = x @ layer.base.weight.T + 2.0 * (x @ layer.lora_A.T) @ layer.lora_B.T
    assert torch.allclose(layer(x), by_hand, atol=1e-6)


def test_a_lora_dpo_run_saves_a_merged_checkpoint_that_sample_py_loads(sft_dir, tmp_path):
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import train_dpo
    from plumbing.flags import parse_config
    from model import load_checkpoint
    shutil.copy(sft_dir[0] / "sft.pt", tmp_path / "sft.pt")
    train_dpo.main(parse_config(train_dpo.DPOConfig, "", [
        "--smoke", "--out_dir", str(tmp_path), "--lora_rank", "4", "--learning_rate", "1e-2"]))
    log = [json.loads(l) for l in (tmp_path / "dpo_metrics.jsonl").read_text().splitlines()]
    # the reference is the adapters-off policy: at step 0 (B = 0) policy == reference
    assert log[0]["loss"] - log[0]["nll_loss"] == pytest.approx(0.6931, abs=1e-3)
    last_margins = [r["rewards/margins"] for r in log[-5:]]      # one batch's margin is noisy
    assert sum(last_margins) / 5 > 0.01                          # the adapters learned
    trained, _ = load_checkpoint(tmp_path / "dpo.pt")            # a plain GPT: merged
    sft, _ = load_checkpoint(tmp_path / "sft.pt")
    assert type(trained) is GPT
    assert max((a - b).abs().max().item() for a, b in
               zip(trained.state_dict().values(), sft.state_dict().values())) > 1e-4
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "sample.py"), str(tmp_path / "dpo.pt"),
                           "What is 1 + 2?"], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "stage dpo" in done.stdout, done.stderr
