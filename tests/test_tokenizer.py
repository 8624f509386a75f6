from data.tokenizer import (RANKS_FILE, SPECIAL_TOKENS, END, encoding_from_ranks, get_tokenizer,
                            load_ranks, train_bpe, training_text)


def test_retraining_reproduces_committed_ranks_file():
    assert train_bpe(training_text()) == load_ranks(RANKS_FILE)


def test_round_trip_arbitrary_text():
    enc = get_tokenizer()
    for text in ["What is 47 + 38?", "  spaces\tand\nnewlines  ", "naïve café, 東京, emoji 🤖!",
                 "", "<|end|> as plain text", "\x00\xff binary-ish"]:
        assert enc.decode(enc.encode_ordinary(text)) == text


def test_digits_are_one_token_each():
    enc = get_tokenizer()
    for number in ["0", "47", "12345", "1000000"]:
        ids = enc.encode_ordinary(number)
        assert [enc.decode([i]) for i in ids] == list(number)


def test_special_tokens_are_single_ids_after_the_ranks():
    enc = get_tokenizer()
    n = len(load_ranks(RANKS_FILE))
    assert [enc.encode_single_token(t) for t in SPECIAL_TOKENS] == list(range(n, n + 3))
    assert enc.encode(END, allowed_special="all") == [enc.encode_single_token(END)]


def test_training_is_deterministic_on_small_text():
    text = "the cat sat on the mat. the cat ate. 12 + 34 = 46."
    a, b = train_bpe(text, vocab_size=280), train_bpe(text, vocab_size=280)
    assert a == b and len(a) > 256
    enc = encoding_from_ranks(a)
    assert enc.decode(enc.encode_ordinary(text)) == text
    assert len(enc.encode_ordinary(text)) < len(text.encode())  # merges compress
