"""Hugging Face Transformers, an optional extra (``pip install "torchrig[hf]"``): loading a model,
tokenizer or feature extractor by hub name or local folder, with one clear message when it is not
there. Hub names go through Transformers' own cache (``HF_HUB_CACHE``); offline (``HF_HUB_OFFLINE=1``
or ``TORCHRIG_OFFLINE=1``) nothing is fetched.

A plugin wrapping another kind of Transformers model builds on :func:`from_pretrained` (the
messages) and :class:`HFClassifier` (logits out, the head named); ``text/hf`` and ``audio/hf`` do.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._errors import TorchrigError
from ._weights import offline

__all__ = ["HFClassifier", "from_pretrained", "transformers"]

INSTALL = 'pip install "torchrig[hf]"'
# the modules a *ForSequenceClassification / *ForAudioClassification model adds on its backbone
_HEADS = ("pre_classifier", "projector", "classifier", "score", "sequence_summary", "logits_proj")


def transformers(what: str) -> Any:
    """The ``transformers`` module, or an error with the install line."""
    try:
        import transformers as module
    except ImportError:
        raise TorchrigError(f"{what} needs Hugging Face Transformers, which is not installed: {INSTALL}") from None
    if not module.utils.is_torch_available():  # e.g. transformers 5 beside torch < 2.6
        raise TorchrigError(f"{what}: the installed transformers {module.__version__} cannot use torch "
                            f"{torch.__version__}. Upgrade torch, or install a transformers release made for it "
                            "(pip install 'transformers<5' for torch < 2.6).")
    return module


def _hub_offline() -> bool:
    return offline() or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _cached_names() -> list[str]:
    """Model names in the Hugging Face cache (for "did you mean")."""
    try:
        from huggingface_hub import scan_cache_dir

        return sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model")
    except Exception:  # no cache folder yet, or an old huggingface_hub: nothing to suggest
        return []


def _cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "~/.cache/huggingface/hub"


def from_pretrained(loader: Any, checkpoint: str, *, what: str, part: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(checkpoint)`` (an ``Auto*`` class), with torchrig's errors.

    Args:
        loader: e.g. ``transformers.AutoTokenizer``.
        checkpoint: a hub name (``"bert-base-uncased"``) or a folder made by ``save_pretrained``.
        what: the component asking, for messages (``"text/hf"``).
        part: what is loaded, for messages (``"model"``, ``"tokenizer"``, ``"feature extractor"``).

    Raises:
        TorchrigError: a folder without that part; a hub name not cached while offline (how to
            pre-download it); a name the hub does not know (with close matches from the cache).
    """
    if not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint).strip():
        raise TorchrigError(f"{what}: checkpoint must be a Hugging Face hub name or a local folder, got {checkpoint!r}.")
    checkpoint = os.fspath(checkpoint)
    local = Path(os.path.expanduser(checkpoint))
    is_dir = local.is_dir()
    # hub names are "name" or "org/name"; anything else that is not a folder is a path gone wrong
    looks_local = checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1 or "\\" in checkpoint
    if not is_dir and looks_local:
        raise TorchrigError(f"{what}: no folder at {checkpoint!r}. Give a folder saved with save_pretrained(DIR), or "
                            "a Hugging Face hub name such as 'bert-base-uncased'.")
    try:
        return loader.from_pretrained(str(local) if is_dir else checkpoint,
                                      local_files_only=is_dir or _hub_offline(), **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if is_dir:
            files = ", ".join(sorted(p.name for p in local.iterdir())[:8]) or "nothing"
            raise TorchrigError(f"{what}: the folder {checkpoint!r} has no {part} that Transformers can read (it holds "
                                f"{files}). Save one there with {part.replace(' ', '_')}.save_pretrained({checkpoint!r})"
                                f" ({reason}).") from None
        near = difflib.get_close_matches(checkpoint, _cached_names(), n=3, cutoff=0.6)
        hint = f" Cached models like it: {', '.join(near)}." if near else ""
        if "valid model identifier" in reason or type(exc).__name__ == "RepositoryNotFoundError":
            raise TorchrigError(f"{what}: the Hugging Face hub has no model {checkpoint!r}.{hint} Check the name on "
                                "https://huggingface.co/models.") from None
        raise TorchrigError(
            f"{what}: the {part} of {checkpoint!r} is not in the Hugging Face cache ({_cache_dir()}) and cannot be "
            f"downloaded ({'offline' if _hub_offline() else reason}).{hint} Pre-download it on a machine with "
            f"internet (`hf download {checkpoint}`, then copy that cache folder here), or save it with "
            "save_pretrained(DIR) and give checkpoint: DIR.") from None


# for `torchrig info` (a builder's ``torchrig_head``): the head depends on the checkpoint's architecture
HEAD_DESCRIPTION = ("the checkpoint's classifier layers: model.classifier, and model.pre_classifier / "
                    "model.projector / model.score where it has them")


class HFClassifier(nn.Module):
    """A Transformers ``*ForSequenceClassification`` / ``*ForAudioClassification`` model as a
    torchrig model: it returns the logits tensor, and names its classifier layers in
    ``torchrig_head`` (fine-tuning trains them first).

    Args:
        model: the Transformers model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.torchrig_head = [f"model.{n}" for n in _HEADS if isinstance(getattr(model, n, None), nn.Module)]

    def forward(self, **inputs: Any) -> torch.Tensor:
        return self.model(**inputs).logits
