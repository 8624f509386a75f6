import pytest
import torch

from data.batching import (DataError, chat_batch, completion_ids, end_id, prompt_ids,
                           read_jsonl, stream_batch, token_stream)
from losses import sft_loss
from model import GPT, GPTConfig


def test_loss_mask_marks_exactly_the_completion_targets():
    prompts, completions = [[1, 2, 3], [4, 5]], [[6, 99], [8, 9, 10, 99]]
    inputs, targets, mask = chat_batch(prompts, completions)
    # row 0: ids 1 2 3 6 99 + pad; targets 2 3 6 99 pad -> completion targets are 6 and 99
    assert targets[0].tolist()[:4] == [2, 3, 6, 99]
    assert mask[0].tolist() == [0, 0, 1, 1, 0]
    # row 1: ids 4 5 8 9 10 99; targets 5 8 9 10 99 -> completion targets 8 9 10 99
    assert targets[1].tolist() == [5, 8, 9, 10, 99]
    assert mask[1].tolist() == [0, 1, 1, 1, 1]
    assert inputs.shape == targets.shape == mask.shape == (2, 5)


def test_prompt_tokens_get_zero_gradient():
    p, c = prompt_ids("What is 2 + 3?"), completion_ids("The answer is 5.")
    inputs, targets, mask = chat_batch([p], [c])
    logits = torch.randn(*inputs.shape, 50, requires_grad=True)
    targets = targets % 50
    sft_loss(logits, targets, mask).backward()
    grad_per_position = logits.grad.abs().sum(-1)[0]
    assert (grad_per_position[: len(p) - 1] == 0).all()
    assert (grad_per_position[len(p) - 1:] > 0).all()
    assert c[-1] == end_id()  # the end token is a target too


def test_read_jsonl_errors_name_file_line_and_field(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: missing field 'completion'"):
        read_jsonl(f, ("prompt", "completion"))
    f.write_text('{"prompt": "a", "completion": 3}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'completion' must be a string"):
        read_jsonl(f, ("prompt", "completion"))
    f.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": " ", '
                 '"rejected": "c"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: field 'chosen' is empty"):
        read_jsonl(f, ("prompt", "chosen", "rejected"))
    f.write_text('{"prompt": "", "completion": "b"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'prompt' is empty"):
        read_jsonl(f, ("prompt", "completion"))
    f.write_text('{"prompt": "a",\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: not valid JSON"):
        read_jsonl(f, ("prompt", "completion"))
    f.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_jsonl(f, ("prompt",))
    with pytest.raises(DataError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl", ("prompt",))


def test_a_packed_line_is_computed_as_if_it_were_alone():
    lines = ["What is 12 + 34? It is 46.", "Hi.", "Reverse the digits of 123. It is 321."] * 20
    stream, starts = token_stream(lines)
    assert stream[starts].eq(end_id()).all() and len(starts) == len(lines)
    rng = torch.Generator().manual_seed(0)
    inputs, targets, positions, attn_mask = stream_batch(stream, starts, 4, 24, rng)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, block_size=24, n_layer=2, n_head=2, n_embd=32)).eval()
    packed = model(inputs, positions, attn_mask)
    checked = 0
    for b in range(4):
        begins = (inputs[b] == end_id()).nonzero().squeeze(1).tolist() + [24]
        assert begins[0] == 0                       # every window starts at a line start
        for lo, hi in zip(begins, begins[1:]):
            assert positions[b, lo:hi].tolist() == list(range(hi - lo))
            alone = model(inputs[b:b + 1, lo:hi])   # the line by itself, positions 0..
            torch.testing.assert_close(packed[b:b + 1, lo:hi], alone, atol=1e-5, rtol=1e-5)
            checked += 1
    assert checked > 4
