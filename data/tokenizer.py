"""A byte-level BPE of the project's own, trained on the toy world and run by tiktoken.

Training (`train_bpe`) is the textbook loop: split text into chunks with a regex,
start from the 256 single bytes, and repeatedly merge the most frequent adjacent
pair into a new token. The result is saved in tiktoken's ranks-file format (one
line per token: base64 of its bytes, then its rank) and loaded into a
`tiktoken.Encoding`, which applies the merges in rank order, so encoding is fast
and exactly the trained BPE. Nothing is downloaded.

Digits are split one per token by the regex (`\\p{N}` matches a single digit), so
arithmetic sees one token per digit. The chat format adds special tokens:
    <|user|>What is 2 + 3?<|assistant|>The answer is 5.<|end|>

Regenerate the committed file with `python -m data.tokenizer`.
"""

import base64
from collections import Counter
from pathlib import Path

import regex
import tiktoken

# GPT-4's split pattern, with numbers cut to single digits.
SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                 r"""|\s*[\r\n]|\s+(?!\S)|\s+""")
USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [USER, ASSISTANT, END]
VOCAB_SIZE = 512                       # 256 bytes + merges + special tokens
RANKS_FILE = Path(__file__).with_name("tokenizer.tiktoken")
TRAIN_LINES, TRAIN_SEED = 20_000, 0    # the corpus the committed file is trained on


def train_bpe(text: str, vocab_size: int = VOCAB_SIZE) -> dict[bytes, int]:
    """Mergeable ranks {token bytes: rank} for a BPE with vocab_size - len(SPECIAL_TOKENS) tokens.

    Ties between equally frequent pairs go to the pair with the lowest ranks, so
    the result depends on nothing but the text.
    """
    ranks = {bytes([i]): i for i in range(256)}
    vocab = [bytes([i]) for i in range(256)]                       # id -> bytes
    # Each distinct chunk once, with its count: merges only ever happen inside a chunk.
    chunks = Counter(regex.findall(SPLIT_PATTERN, text))
    words = [[list(c.encode("utf-8")), n] for c, n in chunks.items()]
    while len(vocab) < vocab_size - len(SPECIAL_TOKENS):
        pairs = Counter()
        for ids, n in words:
            for pair in zip(ids, ids[1:]):
                pairs[pair] += n
        candidates = [(-n, p) for p, n in pairs.items() if vocab[p[0]] + vocab[p[1]] not in ranks]
        if not candidates:
            break                                                  # nothing left to merge
        _, (a, b) = min(candidates)
        new_id = len(vocab)
        vocab.append(vocab[a] + vocab[b])
        ranks[vocab[new_id]] = new_id
        for word in words:
            ids, out, i = word[0], [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            word[0] = out
    return ranks


def save_ranks(ranks: dict[bytes, int], path: Path) -> None:
    lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in
             sorted(ranks.items(), key=lambda kv: kv[1])]
    path.write_text("\n".join(lines) + "\n")


def load_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in Path(path).read_text().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


def encoding_from_ranks(ranks: dict[bytes, int]) -> tiktoken.Encoding:
    n = len(ranks)
    return tiktoken.Encoding(name="toyworld", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={t: n + i for i, t in enumerate(SPECIAL_TOKENS)})


_ENCODING = None


def get_tokenizer() -> tiktoken.Encoding:
    """The project's tokenizer, from the committed ranks file (cached)."""
    global _ENCODING
    if _ENCODING is None:
        _ENCODING = encoding_from_ranks(load_ranks(RANKS_FILE))
    return _ENCODING


def training_text() -> str:
    from data.world import pretrain_lines, sft_rows
    rows = sft_rows(TRAIN_LINES // 4, seed=TRAIN_SEED)
    return "\n".join(pretrain_lines(TRAIN_LINES, seed=TRAIN_SEED) +
                     [r["prompt"] + " " + r["completion"] for r in rows])


if __name__ == "__main__":
    save_ranks(train_bpe(training_text()), RANKS_FILE)
    enc = get_tokenizer()
    print(f"wrote {RANKS_FILE} ({enc.n_vocab} tokens with specials)")
    sample = "What is 47 + 38?"
    print(sample, "->", [enc.decode([t]) for t in enc.encode(sample)])
