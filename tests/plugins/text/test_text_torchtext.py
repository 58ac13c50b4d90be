"""torchtext interop, where torchtext still loads (torch 2.3 environments; .ci/run builds one).

torchtext is discontinued and its compiled library only loads with torch 2.3, so these tests are
skipped elsewhere; the text plugin never needs it.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import torchrig
from torchrig_text import Encoder, get_tokenizer

pytestmark = pytest.mark.torchtext

SAMPLES = ["Don't (ever) stop, \"please\".", "A dog? No: a CAT!", "line<br />break; x", "It's 3.5 miles... OK!?"]


@pytest.fixture(scope="module")
def torchtext():
    try:
        import torchtext as tt

        if hasattr(tt, "disable_torchtext_deprecation_warning"):
            tt.disable_torchtext_deprecation_warning()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchtext.data.utils import get_tokenizer as tt_get_tokenizer  # noqa: F401
            from torchtext.vocab import build_vocab_from_iterator  # noqa: F401
    except (ImportError, OSError, RuntimeError) as exc:  # OSError: libtorchtext.so vs a newer torch
        pytest.skip(f"torchtext does not load here ({type(exc).__name__}); it needs torch 2.3")
    return tt


def test_basic_english_equals_torchtexts(torchtext):
    from torchtext.data.utils import get_tokenizer as tt_get_tokenizer

    theirs, ours = tt_get_tokenizer("basic_english"), get_tokenizer("basic_english")
    for text in SAMPLES:
        assert ours(text) == theirs(text), text


def test_training_with_torchtext_tokenizer_and_vocab(torchtext):
    from torchtext.data.utils import get_tokenizer as tt_get_tokenizer
    from torchtext.vocab import build_vocab_from_iterator

    texts = ["a wonderful warm film", "great and moving", "i loved it", "brilliant and funny",
             "a dull boring mess", "terrible and slow", "i hated it", "awful and far too long"] * 8
    labels = ([1] * 4 + [0] * 4) * 8
    tokenizer = tt_get_tokenizer("basic_english")
    vocab = build_vocab_from_iterator((tokenizer(t) for t in texts), specials=["<pad>", "<unk>"])
    vocab.set_default_index(vocab["<unk>"])
    enc = Encoder(tokenizer, vocab=vocab, max_len=32)  # torchtext objects, used as they are
    assert enc("a wonderful film").tolist() == vocab(tokenizer("a wonderful film"))
    data = [(enc(t), y) for t, y in zip(texts, labels)]
    loader = DataLoader(data, batch_size=8, shuffle=True, collate_fn=enc.collate_fn)
    model = torchrig.get_model("text/embedding_bag", vocab_size=len(vocab), num_classes=2, pad_id=vocab["<pad>"])
    history = torchrig.Trainer(max_epochs=15, progress_bar=False).fit(
        model, loader, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=0.05),
        val_loader=loader, metrics=["accuracy"])
    assert history["val_accuracy"][-1] == 1.0
