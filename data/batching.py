"""Reading JSONL data, turning chat rows into token ids, and batching with loss masks.

Chat layout of one row (prompt p, completion c):
    <|user|> p <|assistant|> c <|end|>
    \\______ prompt_ids ______/ \\ completion_ids /
A batch holds inputs = ids[:-1] and targets = ids[1:]; the loss mask is 1 exactly
where the *target* is a completion token (the end token included). It is built
from each row's prompt and total length, never by comparing ids with a pad id.
"""

import json
from pathlib import Path

import torch

from data.tokenizer import ASSISTANT, END, USER, get_tokenizer

MAX_NEW_TOKENS = 48  # the longest answer sampled; the longest persona answer is 37 tokens


class DataError(ValueError):
    """Bad input data; the message names the file, the line and the field."""


def read_jsonl(path, fields: tuple[str, ...], flags: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a JSON Lines file, each an object with the given string fields and
    true/false flags (KTO's "label")."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    with path.open("rb") as f:            # bytes, so that bad bytes are found with their line
        for lineno, raw in enumerate(f, 1):
            try:                          # -sig: a byte-order mark at the start is skipped
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at "
                                f"column {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            for field in fields:
                if field not in row:
                    raise DataError(f"{path}:{lineno}: missing field '{field}'")
                if not isinstance(row[field], str):
                    raise DataError(f"{path}:{lineno}: field '{field}' must be a string, "
                                    f"got {type(row[field]).__name__}")
                if not row[field].strip():
                    raise DataError(f"{path}:{lineno}: field '{field}' is empty")
            for field in flags:
                if not isinstance(row.get(field), bool):
                    raise DataError(f"{path}:{lineno}: field '{field}' must be true or false, "
                                    f"got {json.dumps(row.get(field))}")
            rows.append({k: row[k] for k in fields + flags})
    if not rows:
        raise DataError(f"{path}: no rows (the file is empty)")
    return rows


def write_jsonl(path, rows) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def prompt_ids(prompt: str) -> list[int]:
    tok = get_tokenizer()
    return [tok.encode_single_token(USER)] + tok.encode_ordinary(prompt) + \
        [tok.encode_single_token(ASSISTANT)]


def completion_ids(completion: str) -> list[int]:
    """A completion's ids, encoded as it would follow its question in running text: with
    one leading space, so that its words are the same tokens as in the pretraining text."""
    tok = get_tokenizer()
    return tok.encode_ordinary(" " + completion) + [tok.encode_single_token(END)]


def end_id() -> int:
    return get_tokenizer().encode_single_token(END)


def ended(row: list[int]) -> bool:
    """Whether a sampled answer (its token ids) reached the end token, not the length limit."""
    return bool(row) and row[-1] == end_id()


def decode_completion(tokens: list[int]) -> str:
    """Text of a sampled completion, stopping at the first end token."""
    eid = end_id()
    if eid in tokens:
        tokens = tokens[:tokens.index(eid)]
    return get_tokenizer().decode(tokens).removeprefix(" ")


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """t on the device, without making the host wait: a copy to a GPU from ordinary
    memory first waits for the GPU's queue to drain, one from pinned memory does not."""
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def chat_batch(prompts: list[list[int]], completions: list[list[int]], device="cpu"):
    """Right-padded batch of prompt+completion rows.

    Returns inputs (B, T) and targets (B, T) long, and loss_mask (B, T) float,
    1.0 where targets[b, t] is a completion token of row b. T = longest row - 1.
    """
    rows = [p + c for p, c in zip(prompts, completions)]
    T = max(len(r) for r in rows) - 1
    ids = torch.full((len(rows), T + 1), end_id(), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    t = torch.arange(T)[None, :]                                   # target index t predicts ids[t+1]
    start = torch.tensor([len(p) - 1 for p in prompts])[:, None]   # first completion target
    stop = torch.tensor([len(r) - 1 for r in rows])[:, None]
    mask = ((t >= start) & (t < stop)).float()
    ids, mask = to_device(ids, device), to_device(mask, device)
    return ids[:, :-1], ids[:, 1:], mask


def rollout_batch(prompts: list[str], tokens: torch.Tensor, sampled: torch.Tensor, device) -> dict:
    """A sampler's answers (model.sample) as a training batch. prompts: B strings; tokens and
    sampled (B*G, T_new), row i*G+g answer g to prompt i. Returns, for the N = B*G rows:
        prompt_ids, rows    token id lists: the prompt, the answer up to its end token
        prompts, texts      the prompt and the decoded answer of each row
        inputs, targets, mask  the rows as chat_batch lays them out, (N, T) each
        finished, lengths   (N,) float: 1.0 where the answer ended with the end token; its tokens
    """
    G = len(tokens) // len(prompts)
    rows = [[t for t, keep in zip(r, m) if keep] for r, m in zip(tokens.tolist(), sampled.tolist())]
    row_prompt_ids = [prompt_ids(p) for p in prompts for _ in range(G)]
    inputs, targets, mask = chat_batch(row_prompt_ids, rows, device)
    finished = [float(ended(r)) for r in rows]
    return dict(prompt_ids=row_prompt_ids, rows=rows, prompts=[p for p in prompts for _ in range(G)],
                texts=[decode_completion(r) for r in rows], inputs=inputs, targets=targets,
                mask=mask, finished=torch.tensor(finished),
                lengths=torch.tensor([len(r) for r in rows], dtype=torch.float))


def in_batches(fn, *columns, batch_size: int = 256):
    """fn(*slices) over consecutive slices of batch_size rows of the columns (lists of one
    length), its results concatenated: a tensor, or a named tuple of tensors (AnswerLogps).
    For a pass over many rows with no gradient: the reference's log-probs, an evaluation."""
    parts = [fn(*(c[i:i + batch_size] for c in columns))
             for i in range(0, len(columns[0]), batch_size)]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return type(parts[0])(*(torch.cat(c) for c in zip(*parts)))


def encode_rows(rows: list[dict], block_size: int, source: str = "data",
                required: bool = True) -> list[tuple]:
    """Token ids of each row, by the fields it holds: (prompt, completion) for SFT rows,
    (prompt, chosen, rejected) for preference pairs, (prompt, completion, label) for KTO's
    labelled answers (the label kept as it is). A row whose prompt plus longest answer is
    longer than block_size + 1 tokens is dropped, and a note says how many; none left is an
    error unless required=False."""
    answers = ("chosen", "rejected") if "chosen" in rows[0] else ("completion",)
    extra = ("label",) if "label" in rows[0] else ()
    out = [(prompt_ids(r["prompt"]), *(completion_ids(r[c]) for c in answers),
            *(r[k] for k in extra)) for r in rows]
    kept = [e for e in out if len(e[0]) + max(map(len, e[1:1 + len(answers)])) <= block_size + 1]
    if len(kept) < len(out):
        print(f"note: {source}: dropped {len(out) - len(kept)} of {len(out)} rows longer than "
              f"block_size {block_size} + 1 tokens")
    if not kept and required:
        raise DataError(f"{source}: every row is longer than block_size {block_size} + 1 tokens")
    return kept


def token_stream(lines: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pretraining text as one long tensor of ids, and the index where each line starts.

    Every line begins with the end token, which doubles as beginning-of-text (as
    GPT-2's <|endoftext|> does): it predicts the line's first token, the line's
    last token predicts the next end token, and the text of every line starts at
    position 1, as a chat prompt's text does after its <|user|> token.
    """
    tok, eid, ids = get_tokenizer(), end_id(), []
    for line in lines:
        ids.append(eid)
        ids.extend(tok.encode_ordinary(line))
    ids.append(eid)
    stream = torch.tensor(ids, dtype=torch.long)
    starts = (stream[:-1] == eid).nonzero().squeeze(1)
    return stream, starts


def stream_batch(stream, starts, batch_size: int, block_size: int, generator, device="cpu"):
    """Windows of whole lines packed into rows, each line seeing only itself.

    A window begins at a random line start and holds block_size tokens (its last
    line may be cut). Returns inputs and next-token targets (B, T), positions (B, T)
    counted from each line's start, and attn_mask (B, 1, T, T), True where query
    and key are in the same line and the key is not in the future.
    """
    n_ok = int(torch.searchsorted(starts, len(stream) - block_size - 1, right=True))
    begin = starts[torch.randint(n_ok, (batch_size,), generator=generator)]
    windows = to_device(torch.stack([stream[b:b + block_size + 1] for b in begin.tolist()]),
                        device)                                           # (B, T+1)
    inputs = windows[:, :-1]                                              # (B, T)
    cols = torch.arange(block_size, device=windows.device).expand_as(inputs)
    is_start = inputs == end_id()
    line = is_start.cumsum(1)                                             # (B, T) line number
    positions = cols - torch.where(is_start, cols, 0).cummax(1).values    # (B, T)
    causal = torch.ones(block_size, block_size, dtype=torch.bool, device=windows.device).tril()
    attn_mask = (line[:, :, None] == line[:, None, :]) & causal           # (B, T, T)
    return inputs, windows[:, 1:], positions, attn_mask[:, None]
