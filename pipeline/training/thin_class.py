"""A semantic loss that a thin class at 0.4 % of the pixels survives, trained through ultralytics.

Ultralytics' semantic loss is cross-entropy plus one Dice averaged over every class, the
background included (whose near-perfect score dilutes the rest). Here the overlap term is a
Tversky index per foreground class, averaged over the foreground classes only: with
``alpha = beta = 0.5`` it is per-class Dice; ``beta > alpha`` weighs missed pixels of a class
above pixels painted where it is not (Endoscapes' artery is mostly missed, not over-painted).
With ``gamma > 0`` the cross-entropy is focal (Lin et al. 2017): each pixel's term is scaled by
``(1 - p)^gamma`` of its true class, so the many easy background pixels count less than the
hard ones at a thin structure's edge.

    model.train(trainer=thin_class_trainer(alpha=0.3, beta=0.7, gamma=2.0), data="semantic.yaml", ...)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from ultralytics.models.yolo.semantic import SemanticSegmentationTrainer
from ultralytics.nn.tasks import SemanticSegmentationModel
from ultralytics.utils import RANK
from ultralytics.utils.loss import SemanticSegmentationLoss

SMOOTH = 1.0


class ThinClassLoss(SemanticSegmentationLoss):
    """Cross-entropy (ignore 255; focal with ``gamma``) + mean over foreground classes of (1 - Tversky index)."""

    def __init__(self, model: torch.nn.Module, alpha: float = 0.5, beta: float = 0.5, gamma: float = 0.0):
        super().__init__(model)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def _ce_loss(self, preds: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.gamma == 0 or self.nc == 1:
            return super()._ce_loss(preds, masks, valid)
        target = masks.reshape(-1)[valid].long()
        logits = preds.float().permute(0, 2, 3, 1).reshape(-1, self.nc)[valid]
        log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)  # of each pixel's true class
        weight = torch.ones_like(log_p) if self.ce.weight is None else self.ce.weight[target].float()
        focal = -weight * (1 - log_p.exp()) ** self.gamma * log_p
        return focal.sum() / weight.sum().clamp_min(1)

    def _dice_loss(self, preds: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        probabilities = F.softmax(preds.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, self.nc)[valid]
        truth = F.one_hot(masks.reshape(-1)[valid].long(), self.nc).float()
        hits = (probabilities * truth).sum(0)
        painted_wrongly = (probabilities * (1 - truth)).sum(0)
        missed = ((1 - probabilities) * truth).sum(0)
        tversky = (hits + SMOOTH) / (hits + self.alpha * painted_wrongly + self.beta * missed + SMOOTH)
        return (1.0 - tversky[1:]).mean()  # class 0 is the background


class ThinClassSemanticModel(SemanticSegmentationModel):
    """Ultralytics' semantic model, trained with :class:`ThinClassLoss` (``tversky`` weights, focal ``gamma``)."""

    tversky = (0.5, 0.5)
    gamma = 0.0

    def init_criterion(self) -> ThinClassLoss:
        return ThinClassLoss(self, *self.tversky, gamma=self.gamma)


def thin_class_trainer(alpha: float = 0.5, beta: float = 0.5, gamma: float = 0.0) -> type[SemanticSegmentationTrainer]:
    """Ultralytics' semantic trainer whose model learns with :class:`ThinClassLoss` (``alpha``, ``beta``, ``gamma``)."""

    class ThinClassTrainer(SemanticSegmentationTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):
            model = ThinClassSemanticModel(cfg, nc=self.data["nc"], ch=self.data["channels"],
                                           verbose=verbose and RANK == -1)
            model.tversky, model.gamma = (alpha, beta), gamma
            model = self.set_model_names_for_load(model)
            if weights:
                model.load(weights)
            return model

    return ThinClassTrainer
