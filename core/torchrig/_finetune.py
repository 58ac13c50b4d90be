"""Fine-tuning a pretrained model: train the head alone first, then everything with a smaller
learning rate for the backbone (discriminative learning rates)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from ._callbacks import Callback
from ._errors import TorchrigError
from ._weights import head_of

if TYPE_CHECKING:
    from ._loop import Trainer

__all__ = ["FineTune"]


class FineTune(Callback):
    """Train only the head for ``freeze_epochs`` epochs, then unfreeze the backbone, which learns
    at ``lr * backbone_lr_scale``.

    While frozen, the backbone computes no gradients (an epoch costs about a forward pass) and
    its BatchNorm layers stay in eval mode, so their running statistics keep their pretrained
    values. The state follows from the epoch number alone, so a resumed run continues exactly.

    The head is what the model declares in ``torchrig_head`` (built-in models do: torchvision's
    ``fc`` / ``classifier`` / ``heads``), else its last ``nn.Linear``; ``head=`` overrides it.

    Args:
        freeze_epochs: epochs that train the head alone (0: never frozen).
        backbone_lr_scale: the backbone's learning rate relative to the head's once unfrozen.
        head: module names of the head (default: the model's own, see above).

    Example::

        model = torchrig.get_model("vision/resnet18", num_classes=2, weights="DEFAULT")
        finetune = torchrig.FineTune(freeze_epochs=2, backbone_lr_scale=0.1)
        optimizer = torch.optim.AdamW(finetune.param_groups(model), lr=1e-3)
        Trainer(max_epochs=10, callbacks=[finetune]).fit(model, train_loader, loss_fn, optimizer)
    """

    def __init__(self, *, freeze_epochs: int = 1, backbone_lr_scale: float = 0.1,
                 head: Sequence[str] | str | None = None) -> None:
        if int(freeze_epochs) < 0:
            raise TorchrigError(f"FineTune: freeze_epochs must be >= 0, got {freeze_epochs!r}.")
        if not float(backbone_lr_scale) > 0:
            raise TorchrigError(f"FineTune: backbone_lr_scale must be > 0, got {backbone_lr_scale!r}.")
        self.freeze_epochs = int(freeze_epochs)
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.head = [head] if isinstance(head, str) else (list(head) if head is not None else None)
        self.frozen: bool | None = None
        self.frozen_norms: list[nn.Module] = []  # BatchNorm layers held in eval mode while frozen
        self._owner: int | None = None  # the model whose original requires_grad flags are kept
        self._trainable: dict[int, bool] = {}

    def split(self, model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone, head)`` parameters of ``model``."""
        head = self.head or head_of(model)
        if not head:
            raise TorchrigError(f"FineTune: {type(model).__name__} declares no head (torchrig_head) and has no "
                                "nn.Linear layer; name the head's modules with FineTune(head=[...]).")
        modules = dict(model.named_modules())
        unknown = [h for h in head if h not in modules]
        if unknown:
            from ._errors import did_you_mean

            raise TorchrigError(f"FineTune: the model has no module {unknown[0]!r}.{did_you_mean(unknown[0], modules)}")
        head_params = {id(p) for h in head for p in modules[h].parameters()}
        backbone = [p for p in model.parameters() if id(p) not in head_params]
        return backbone, [p for p in model.parameters() if id(p) in head_params]

    def param_groups(self, model: nn.Module, *, lr: float | None = None) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the backbone at ``lr * backbone_lr_scale``, the head at
        ``lr``. ``lr`` may be left out when the optimizer is given it: ``AdamW(groups, lr=1e-3)``
        (the backbone's group then says its scale, and :meth:`on_fit_start` applies it)."""
        backbone, head = self.split(model)
        groups: list[dict[str, Any]] = [{"params": backbone, "name": "backbone", "lr_scale": self.backbone_lr_scale},
                                        {"params": head, "name": "head"}]
        if lr is not None:
            groups[0]["lr"], groups[1]["lr"] = lr * self.backbone_lr_scale, lr
        return groups

    # ------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Trainer, **kwargs: Any) -> None:
        backbone, _ = self.split(trainer.model)
        ids = {id(p) for p in backbone}
        groups = trainer.optimizer.param_groups
        mixed = [g for g in groups if any(id(p) in ids for p in g["params"]) and not all(id(p) in ids for p in g["params"])]
        if mixed and self.backbone_lr_scale != 1.0:
            raise TorchrigError("FineTune: the optimizer holds backbone and head parameters in one group, so the "
                                "backbone cannot get its own learning rate. Build it from the groups: "
                                "torch.optim.AdamW(finetune.param_groups(model), lr=...).")
        scaled = False
        for group in groups:
            scale = group.pop("lr_scale", None)
            if scale is not None and trainer.epoch == 0:  # fresh: lr given to the optimizer, scale it once
                for key in ("lr", "initial_lr", "max_lr", "min_lr"):  # and what schedulers derived from it
                    if isinstance(group.get(key), float):
                        group[key] *= scale
                scaled = True
        if scaled and trainer.scheduler is not None and hasattr(trainer.scheduler, "base_lrs"):
            trainer.scheduler.base_lrs = [g.get("initial_lr", g["lr"]) for g in groups]
        self.frozen = None

    def apply(self, model: nn.Module, epoch: int) -> bool:
        """Freeze or unfreeze the backbone for ``epoch`` (1-based) of a model in train mode;
        return whether it is frozen. Frozen BatchNorm layers go to eval mode (call this after
        ``model.train()``)."""
        frozen = epoch <= self.freeze_epochs
        backbone, _ = self.split(model)
        if self._owner != id(model):  # what the user left trainable: only that is ever unfrozen
            self._owner, self._trainable = id(model), {id(p): p.requires_grad for p in model.parameters()}
        for p in backbone:
            p.requires_grad_(not frozen and self._trainable.get(id(p), True))
        self.frozen_norms = []
        if frozen:
            ids = {id(p) for p in backbone}
            self.frozen_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                                 and any(id(p) in ids for p in m.parameters())]
            for module in self.frozen_norms:
                module.eval()
        return frozen

    def on_train_epoch_start(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        frozen = self.apply(trainer.model, epoch)  # the Trainer called model.train() just before
        if frozen != self.frozen:
            head = ", ".join(self.head or head_of(trainer.model))
            trainer.log(f"finetune: training the head ({head}) alone, backbone frozen, until epoch {self.freeze_epochs}"
                        if frozen else f"finetune: backbone unfrozen at epoch {epoch} "
                        f"(learning rate x{self.backbone_lr_scale:g})")
            self.frozen = frozen

    def release(self, model: nn.Module) -> None:
        """Hand the model back as it came: the parameters it had trainable are trainable again."""
        if self._owner == id(model):
            for p in model.parameters():
                p.requires_grad_(self._trainable.get(id(p), p.requires_grad))
        self._owner, self._trainable, self.frozen_norms = None, {}, []

    def on_fit_end(self, trainer: Trainer, **kwargs: Any) -> None:
        self.release(trainer.model)
