"""The CUDA path (bf16 autocast, the bf16 KV cache, fused AdamW) against the CPU's float32.
Skipped where there is no CUDA GPU, as in CI; on a GPU machine: pytest tests/test_cuda.py"""
import copy

import pytest
import torch

from losses import sft_loss
from model import GPT, GPTConfig, autocast, sample, sample_naive
from plumbing.loop import make_optimizer, optimizer_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CFG = GPTConfig(vocab_size=64, block_size=48, n_layer=2, n_head=4, n_embd=64)
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def rel_err(a, b) -> float:
    return ((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm()).item()


@pytest.fixture
def models():
    """The same weights on the CPU and on the GPU."""
    torch.manual_seed(0)
    cpu = GPT(CFG)
    return cpu, copy.deepcopy(cpu).to(CUDA)


def test_bf16_logits_are_close_to_float32(models):
    idx = torch.randint(CFG.vocab_size, (4, 40))
    with torch.no_grad(), autocast(CUDA):
        gpu = models[1](idx.to(CUDA))
    assert gpu.dtype == torch.bfloat16                        # autocast is on
    assert rel_err(gpu, models[0](idx).detach()) < 2e-2       # bf16 operands: ~1e-3..1e-2


def test_a_training_step_matches_the_cpu(models):
    """Loss, gradient and the AdamW update (fused on CUDA) agree with float32 on the CPU."""
    idx, targets = torch.randint(CFG.vocab_size, (2, 8, 33)).unbind(0)
    deltas, losses = [], []
    for model, device in zip(models, (CPU, CUDA)):
        before = [p.detach().clone() for p in model.parameters()]
        opt = make_optimizer(model, 1e-3, 0.1, device)
        assert opt.defaults["fused"] == (device.type == "cuda")
        with autocast(device):
            loss = sft_loss(model(idx.to(device)), targets.to(device), None)
        loss.backward()
        optimizer_step(model, opt, 1.0)
        losses.append(loss.item())
        deltas.append(torch.cat([(p.detach() - b).flatten().cpu()
                                 for p, b in zip(model.parameters(), before)]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)
    # Adam's first step moves each weight by about lr * sign(grad): same direction
    assert torch.nn.functional.cosine_similarity(deltas[0], deltas[1], dim=0) > 0.95


@pytest.mark.parametrize("temperature,num_samples", [(0.0, 1), (1.0, 8)])
def test_kv_cache_sampling_equals_naive_on_cuda(models, temperature, num_samples):
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11], [3, 3, 5, 7, 1]]
    kwargs = dict(max_new_tokens=25, end_id=0, temperature=temperature,
                  num_samples=num_samples)
    model = models[1].eval()
    fast = sample(model, prompts, generator=torch.Generator().manual_seed(7), **kwargs)
    slow = sample_naive(model, prompts, generator=torch.Generator().manual_seed(7), **kwargs)
    assert fast[0].is_cuda
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])
