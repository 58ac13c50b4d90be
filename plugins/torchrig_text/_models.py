"""Text classifiers on padded id batches ``(ids (B, T), lengths (B,))``; padding never changes a
sample's output (masks, packed sequences, bag exclusion). Without ``lengths`` (e.g. fixed-width
arrays from scikit-learn), each text's length is its count of non-``pad_id`` ids: padding trails."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import torchrig

from ._plugin import plugin
from ._vectors import init_embedding, load_vectors


def _with_vectors(model: nn.Module, name: str, *, vectors: Any, vocab: Any, freeze: bool) -> nn.Module:
    """Load pretrained word vectors into ``model.embedding`` and freeze it if asked; the coverage
    goes into ``model.torchrig_init_report`` (recipes print it and keep it in summary.json)."""
    embedding = model.embedding
    if vectors is not None:
        if vocab is None:
            raise torchrig.TorchrigError(
                f"text/{name}: vectors={str(vectors)!r} need the vocabulary to align to: pass "
                "vocab=encoder.vocab (recipes and TextEncoder pass it for you).")
        tokens = list(vocab.get_itos() if hasattr(vocab, "get_itos") else vocab)
        rows, dim = embedding.weight.shape
        if len(tokens) != rows:
            raise torchrig.TorchrigError(f"text/{name}: vocab has {len(tokens)} tokens but vocab_size is {rows}; "
                                         "pass the vocabulary the model's ids come from.")
        aligned = load_vectors(vectors, tokens, dim=dim)
        init_embedding(embedding.weight, aligned, embedding.padding_idx)
        model.torchrig_init_report = {"message": f"{aligned}{', frozen' if freeze else ''}",
                                      "vectors": str(aligned.path), "found": aligned.covered,
                                      "total": aligned.counted, "frozen": bool(freeze)}
    embedding.weight.requires_grad_(not freeze)
    return model


def _trim(ids: torch.Tensor, lengths: torch.Tensor | None, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The lengths (given, or counted as non-padding ids), and ids cut to the longest text."""
    if lengths is None:
        lengths = (ids != pad_id).sum(1).clamp_min(1)
    lengths = lengths.to(ids.device)
    if _exporting():  # a data-dependent shape; the padding is masked out anyway
        return ids, lengths
    return ids[:, : int(lengths.max())], lengths


def _exporting() -> bool:
    compiler = getattr(torch, "compiler", None)
    check = getattr(compiler, "is_exporting", None) or getattr(compiler, "is_compiling", None)
    return bool(check and check())


def _mask(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """True at real tokens, False at padding: (B, T)."""
    return torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None]


class EmbeddingBagClassifier(nn.Module):
    torchrig_head = "fc"  # fine-tuning trains it first; another num_classes replaces it

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int, pad_id: int) -> None:
        super().__init__()
        # padding_idx entries are left out of each bag's mean, so padding changes nothing
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=pad_id)
        self.fc = nn.Linear(embed_dim, num_classes)
        nn.init.uniform_(self.embedding.weight, -0.5, 0.5)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if _exporting():  # the same mean as a lookup and a masked sum: ONNX runs EmbeddingBag as a loop per bag
            keep = (ids != self.embedding.padding_idx).unsqueeze(-1).to(self.embedding.weight.dtype)
            total = (nn.functional.embedding(ids, self.embedding.weight) * keep).sum(1)
            return self.fc(total / keep.sum(1).clamp(min=1))
        return self.fc(self.embedding(ids))


@plugin.model
def embedding_bag(*, vocab_size: int, num_classes: int = 2, embed_dim: int = 64, pad_id: int = 0,
                  vectors: str | None = None, freeze_embeddings: bool = False,
                  vocab: Sequence[str] | None = None) -> nn.Module:
    """The torchtext tutorial's model: the mean of the token embeddings, then a linear layer.

    Args:
        vectors: a pretrained word-vectors file (GloVe .txt, word2vec .txt/.bin, fastText .vec)
            for the embedding, aligned to ``vocab``; tokens it lacks get a small random vector.
        freeze_embeddings: keep the embedding fixed while the rest trains.
        vocab: the vocabulary's tokens in id order (recipes and ``TextEncoder`` pass it).
    """
    return _with_vectors(EmbeddingBagClassifier(vocab_size, num_classes, embed_dim, pad_id), "embedding_bag",
                         vectors=vectors, vocab=vocab, freeze=freeze_embeddings)


class RNNClassifier(nn.Module):
    torchrig_head = "fc"  # fine-tuning trains it first; another num_classes replaces it

    def __init__(self, cell: type[nn.RNNBase], vocab_size: int, num_classes: int, embed_dim: int,
                 hidden: int, layers: int, dropout: float, pad_id: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = cell(embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                        dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_classes)
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        ids, lengths = _trim(ids, lengths, self.pad_id)
        if _exporting():
            return self.fc(self.unpacked(self.embedding(ids), lengths))
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        last = torch.cat([hidden[-2], hidden[-1]], dim=1)  # the top layer, both directions
        return self.fc(self.dropout(last))

    def unpacked(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The top layer's final states of both directions, as the packed forward gives them in
        eval mode, without packing (which exporters cannot trace): each direction runs over the
        padded batch, the backward one on every sequence reversed within its own length, so
        padding always comes after a sequence's tokens and never reaches a state that is read."""
        rnn = self.rnn
        b, t = x.shape[:2]
        steps = torch.arange(t, device=x.device)[None, :]
        n = lengths.to(x.device)[:, None]
        reverse = torch.where(steps < n, n - 1 - steps, steps)  # (B, T): its own inverse
        last = (lengths.to(x.device) - 1).clamp(min=0)
        rows = torch.arange(b, device=x.device)
        finals: list[torch.Tensor] = []
        for layer in range(rnn.num_layers):
            outputs, finals = [], []
            for suffix in ("", "_reverse"):
                seq = x[rows[:, None], reverse] if suffix else x
                params = {f"{name}_l0": getattr(rnn, f"{name}_l{layer}{suffix}")
                          for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                out = torch.func.functional_call(self._cell(rnn, seq.shape[-1]), params, (seq,))[0]
                finals.append(out[rows, last])
                outputs.append(out[rows[:, None], reverse] if suffix else out)
            x = torch.cat(outputs, dim=-1)
        return torch.cat(finals, dim=1)

    @staticmethod
    def _cell(rnn: nn.RNNBase, inputs: int) -> nn.RNNBase:
        """A one-layer, one-direction RNN of ``rnn``'s kind: a template for its weights."""
        return type(rnn)(inputs, rnn.hidden_size, batch_first=True, device="meta")


@plugin.model
def bigru(*, vocab_size: int, num_classes: int = 2, embed_dim: int = 128, hidden: int = 128, layers: int = 1,
          dropout: float = 0.2, pad_id: int = 0, vectors: str | None = None, freeze_embeddings: bool = False,
          vocab: Sequence[str] | None = None) -> nn.Module:
    """A bidirectional GRU over packed sequences; the final states of both directions -> linear.

    Args:
        vectors: a pretrained word-vectors file (GloVe .txt, word2vec .txt/.bin, fastText .vec)
            for the embedding, aligned to ``vocab``; tokens it lacks get a small random vector.
        freeze_embeddings: keep the embedding fixed while the rest trains.
        vocab: the vocabulary's tokens in id order (recipes and ``TextEncoder`` pass it).
    """
    model = RNNClassifier(nn.GRU, vocab_size, num_classes, embed_dim, hidden, layers, dropout, pad_id)
    return _with_vectors(model, "bigru", vectors=vectors, vocab=vocab, freeze=freeze_embeddings)


@plugin.model
def bilstm(*, vocab_size: int, num_classes: int = 2, embed_dim: int = 128, hidden: int = 128, layers: int = 1,
           dropout: float = 0.2, pad_id: int = 0, vectors: str | None = None, freeze_embeddings: bool = False,
           vocab: Sequence[str] | None = None) -> nn.Module:
    """A bidirectional LSTM over packed sequences; the final states of both directions -> linear.

    Args:
        vectors: a pretrained word-vectors file (GloVe .txt, word2vec .txt/.bin, fastText .vec)
            for the embedding, aligned to ``vocab``; tokens it lacks get a small random vector.
        freeze_embeddings: keep the embedding fixed while the rest trains.
        vocab: the vocabulary's tokens in id order (recipes and ``TextEncoder`` pass it).
    """
    model = RNNClassifier(nn.LSTM, vocab_size, num_classes, embed_dim, hidden, layers, dropout, pad_id)
    return _with_vectors(model, "bilstm", vectors=vectors, vocab=vocab, freeze=freeze_embeddings)


class SinusoidalPositions(nn.Module):
    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len)[:, None]
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div[: dim // 2])
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        return self.table[:length]


class TransformerClassifier(nn.Module):
    torchrig_head = "fc"  # fine-tuning trains it first; another num_classes replaces it

    def __init__(self, vocab_size: int, num_classes: int, dim: int, heads: int, layers: int, ff: int,
                 dropout: float, max_len: int, positions: str, pad_id: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.positions = (nn.Embedding(max_len, dim) if positions == "learned" else SinusoidalPositions(dim, max_len))
        self.learned = positions == "learned"
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True)
        # enable_nested_tensor=False: the same kernels with and without padding, so padded and
        # unpadded samples give the same outputs
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)
        self.scale = math.sqrt(dim)
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        ids, lengths = _trim(ids, lengths, self.pad_id)
        mask = _mask(ids, lengths)
        t = ids.shape[1]
        pos = self.positions(torch.arange(t, device=ids.device)) if self.learned else self.positions(t)
        x = self.embedding(ids) * self.scale + pos
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)  # the mean over real tokens
        return self.fc(pooled)


@plugin.model
def transformer(*, vocab_size: int, num_classes: int = 2, dim: int = 128, heads: int = 4, layers: int = 2,
                ff: int = 256, dropout: float = 0.1, max_len: int = 512, positions: str = "sinusoidal",
                pad_id: int = 0, vectors: str | None = None, freeze_embeddings: bool = False,
                vocab: Sequence[str] | None = None) -> nn.Module:
    """A small Transformer encoder (pre-norm) with a padding mask and mean pooling.

    Args:
        positions: "sinusoidal" (fixed) or "learned" position embeddings.
        max_len: the longest input it accepts.
        vectors: (``dim`` wide) a pretrained word-vectors file (GloVe .txt, word2vec .txt/.bin, fastText .vec)
            for the embedding, aligned to ``vocab``; tokens it lacks get a small random vector.
        freeze_embeddings: keep the embedding fixed while the rest trains.
        vocab: the vocabulary's tokens in id order (recipes and ``TextEncoder`` pass it).
    """
    if positions not in ("sinusoidal", "learned"):
        raise torchrig.TorchrigError(f"text/transformer: positions must be 'sinusoidal' or 'learned', got {positions!r}.")
    model = TransformerClassifier(vocab_size, num_classes, dim, heads, layers, ff, dropout, max_len, positions, pad_id)
    return _with_vectors(model, "transformer", vectors=vectors, vocab=vocab, freeze=freeze_embeddings)


class KimCNN(nn.Module):
    torchrig_head = "fc"  # fine-tuning trains it first; another num_classes replaces it

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int, channels: int,
                 kernel_sizes: tuple[int, ...], dropout: float, pad_id: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k) for k in kernel_sizes)
        self.kernel_sizes = kernel_sizes
        self.pad_id = pad_id
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * len(kernel_sizes), num_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        ids, lengths = _trim(ids, lengths, self.pad_id)
        widest = max(self.kernel_sizes)
        if ids.shape[1] < widest:  # every text is at least as long as the widest filter
            ids = nn.functional.pad(ids, (0, widest - ids.shape[1]), value=self.pad_id)
        x = self.embedding(ids).transpose(1, 2)  # (B, E, T)
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            out = torch.relu(conv(x))  # (B, C, T - k + 1)
            # windows that reach past a text's end (into padding) are left out of the max
            valid = torch.clamp(lengths - k + 1, min=1)
            keep = torch.arange(out.shape[2], device=ids.device)[None, :] < valid[:, None]
            pooled.append(out.masked_fill(~keep[:, None, :], float("-inf")).amax(dim=2))
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


@plugin.model
def cnn(*, vocab_size: int, num_classes: int = 2, embed_dim: int = 128, channels: int = 100,
        kernel_sizes: tuple[int, ...] = (3, 4, 5), dropout: float = 0.5, pad_id: int = 0,
        vectors: str | None = None, freeze_embeddings: bool = False, vocab: Sequence[str] | None = None) -> nn.Module:
    """Kim (2014)'s CNN: parallel 1-D convolutions of widths ``kernel_sizes``, max over time.

    Args:
        vectors: a pretrained word-vectors file (GloVe .txt, word2vec .txt/.bin, fastText .vec)
            for the embedding, aligned to ``vocab``; tokens it lacks get a small random vector.
        freeze_embeddings: keep the embedding fixed while the rest trains.
        vocab: the vocabulary's tokens in id order (recipes and ``TextEncoder`` pass it).
    """
    model = KimCNN(vocab_size, num_classes, embed_dim, channels, tuple(kernel_sizes), dropout, pad_id)
    return _with_vectors(model, "cnn", vectors=vectors, vocab=vocab, freeze=freeze_embeddings)
