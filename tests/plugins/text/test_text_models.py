"""Every registered text model: a padded batch gives the same outputs as its samples one by one."""

from __future__ import annotations

import pytest
import torch

import torchrig

# models on torchrig's own vocabularies (text/hf brings its checkpoint's: tests/plugins/text/test_text_hf.py)
ID_MODELS = [m for m in torchrig.list_models(plugin="text") if m != "text/hf"]


@pytest.mark.parametrize("name", ID_MODELS)
def test_padding_does_not_change_outputs(name):
    torch.manual_seed(0)
    model = torchrig.get_model(name, vocab_size=50, num_classes=4).eval()
    texts = [torch.randint(1, 50, (n,)) for n in (1, 3, 7, 12)]
    lengths = torch.tensor([len(t) for t in texts])
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True, padding_value=0)
    with torch.no_grad():
        together = model(padded, lengths)
        alone = torch.cat([model(t[None], torch.tensor([len(t)])) for t in texts])
        # fixed-width arrays without lengths (scikit-learn): lengths counted from the padding
        wide = torch.nn.functional.pad(padded, (0, 20), value=0)
        counted = model(wide)
    assert together.shape == (4, 4)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(counted, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ID_MODELS)
def test_trains_a_step(name):
    model = torchrig.get_model(name, vocab_size=30, num_classes=2)
    ids = torch.randint(1, 30, (4, 9))
    loss = torch.nn.functional.cross_entropy(model(ids, torch.tensor([9, 5, 3, 1])), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    first = next(model.parameters())  # the embedding: gradients reach the bottom of the model
    assert first.grad is not None and first.grad.abs().sum() > 0
