"""Tokenizers, vocabulary and the encoder: torchtext-compatible behaviour and exact round trips."""

from __future__ import annotations

import json

import pytest
import torch

import torchrig
from torchrig_text import Encoder, Vocab, build_vocab_from_iterator, get_tokenizer

TEXTS = ["The cat sat on the mat.", "A dog? No: a CAT!", "Don't (ever) stop, \"please\".", "<br />new line"]


def test_basic_english_matches_torchtext_rules():
    tok = get_tokenizer("basic_english")
    assert tok("Don't (ever) stop, \"please\".") == ["don", "'", "t", "(", "ever", ")", "stop", ",", "please", "."]
    assert tok("A dog? No: a CAT!") == ["a", "dog", "?", "no", "a", "cat", "!"]
    assert tok("line<br />break;x") == ["line", "break", "x"]
    assert get_tokenizer("whitespace")("Keep Case, here.") == ["Keep", "Case,", "here."]
    assert get_tokenizer("char")("ab c") == ["a", "b", " ", "c"]


def test_vocab_min_freq_max_tokens_specials_and_unknown():
    vocab = build_vocab_from_iterator([["a", "b", "a", "c"], ["a", "b", "d"]], min_freq=2)
    assert vocab.get_itos() == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    assert vocab["zzz"] == vocab["<unk>"] == 1
    small = build_vocab_from_iterator([["a", "b", "a"]], max_tokens=5)
    assert len(small) == 5 and "b" not in small
    again = Vocab.from_state_dict(json.loads(json.dumps(vocab.state_dict())))
    assert again.get_itos() == vocab.get_itos() and again["zzz"] == 1


@pytest.mark.parametrize("tokenizer", ["basic_english", "whitespace", "char",
                                       {"name": "bpe", "vocab_size": 60, "min_frequency": 1},
                                       {"name": "wordpiece", "vocab_size": 60, "min_frequency": 1}])
def test_encoder_state_round_trip_gives_identical_ids(tokenizer):
    enc = Encoder(tokenizer, max_len=12, bos=True, eos=True).fit(TEXTS * 3)
    state = json.loads(json.dumps(enc.state_dict()))  # what the run dir stores
    fresh = Encoder(tokenizer, max_len=12, bos=True, eos=True)
    fresh.load_state_dict(state)
    for text in TEXTS + ["unseen words entirely"]:
        a, b = enc(text), fresh(text)
        assert torch.equal(a, b) and len(a) <= 12
        assert int(a[0]) == enc.vocab["<bos>"] and int(a[-1]) == enc.vocab["<eos>"]
    batch = enc.encode_batch(TEXTS)
    assert all(torch.equal(x, enc(t)) for x, t in zip(batch, TEXTS))
    assert enc.model_kwargs == {"vocab_size": len(enc.vocab), "pad_id": 0}


def test_collate_pads_per_batch_with_lengths():
    enc = Encoder("basic_english").fit(TEXTS)
    (ids, lengths), y = enc.collate_fn([(enc("the cat"), 0), (enc("the cat sat on the mat"), 1)])
    assert ids.shape == (2, 6) and lengths.tolist() == [2, 6] and ids[0, 2:].eq(0).all() and y.tolist() == [0, 1]


def test_encoder_errors():
    with pytest.raises(torchrig.TorchrigError, match=r"text/encode is not fitted"):
        Encoder("basic_english")("hello")
    with pytest.raises(torchrig.TorchrigError, match=r"Unknown transform 'text/basic_englsh'.*Did you mean 'text/basic_english'"):
        Encoder("basic_englsh")


def test_a_plain_callable_tokenizer_and_a_ready_vocab_work():
    """What torchtext users pass in: their own tokenizer callable and vocab object."""
    vocab = build_vocab_from_iterator([t.lower().split() for t in TEXTS])
    enc = Encoder(lambda s: s.lower().split(), vocab=vocab).fit(["ignored: the vocab is given"])
    assert enc.vocab is vocab and enc("the cat").tolist() == [vocab["the"], vocab["cat"]]


@pytest.mark.parametrize("tokenizer", ["basic_english", "whitespace", {"name": "bpe", "vocab_size": 60, "min_frequency": 1}])
def test_batch_path_equals_text_by_text(tokenizer):
    """encode_padded (what the loader's collate runs on raw texts) = each text encoded, then padded."""
    enc = Encoder(tokenizer, max_len=7, eos=True).fit(TEXTS * 3)
    texts = TEXTS + ["", "unseen words entirely here and more and more"]
    ids, lengths = enc.encode_padded(texts)
    one_by_one = [enc(t) for t in texts]
    assert lengths.tolist() == [len(x) for x in one_by_one] and max(lengths) <= 7
    assert torch.equal(ids, torch.nn.utils.rnn.pad_sequence(one_by_one, batch_first=True, padding_value=enc.pad_id))
    (from_raw, raw_lengths), y = enc.collate_fn([(t, i) for i, t in enumerate(texts)])
    (from_ids, _), _ = enc.collate_fn([(x, i) for i, x in enumerate(one_by_one)])
    assert torch.equal(from_raw, from_ids) and torch.equal(raw_lengths, lengths) and y.tolist() == list(range(6))
    with pytest.raises(torchrig.TorchrigError, match=r"text/encode takes strings, got int: 3"):
        enc.encode_padded(["fine", 3])


def test_empty_text_gives_one_unknown_token():
    enc = Encoder("basic_english").fit(TEXTS)
    assert enc("").tolist() == [enc.vocab["<unk>"]] and enc("   ").tolist() == [enc.vocab["<unk>"]]


def test_fitted_encoder_pickles_for_worker_processes():
    """DataLoader workers started with spawn (macOS, Windows) receive the encoder by pickle."""
    import pickle

    for tokenizer in ("basic_english", "char", {"name": "wordpiece", "vocab_size": 60, "min_frequency": 1}):
        enc = Encoder(tokenizer).fit(TEXTS)
        again = pickle.loads(pickle.dumps(enc))
        assert all(torch.equal(enc(t), again(t)) for t in TEXTS)
