"""A semantic loss that a thin class at 0.4 % of the pixels survives, trained through ultralytics.

Ultralytics' semantic loss is cross-entropy plus one Dice averaged over every class, the
background included (whose near-perfect score dilutes the rest). Here the overlap term is a
Tversky index per foreground class, averaged over the foreground classes only: with
``alpha = beta = 0.5`` it is per-class Dice; ``beta > alpha`` weighs missed pixels of a class
above pixels painted where it is not (Endoscapes' artery is mostly missed, not over-painted).
With ``gamma > 0`` the cross-entropy is focal (Lin et al. 2017): each pixel's term is scaled by
``(1 - p)^gamma`` of its true class, so the many easy background pixels count less than the
hard ones at a thin structure's edge. With ``boundary > 0`` a boundary term (after Kervadec et al.
2019, "Boundary loss for highly unbalanced segmentation") is added, weighted by it: each foreground
class's probability painted outside the class is weighted by its distance to the nearest true
pixel (and one missed inside by its depth), both in eighths of the image's longer side, capped at
1; where a frame has none of the class every pixel painted with it weighs 1. Unlike the overlap
terms it grows with how far from the truth a class is painted, so a vessel painted on the far
side of the gallbladder costs more than one a pixel beside the artery.

    model.train(trainer=thin_class_trainer(alpha=0.3, beta=0.7, gamma=2.0), data="semantic.yaml", ...)
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from ultralytics.models.yolo.semantic import SemanticSegmentationTrainer
from ultralytics.nn.tasks import SemanticSegmentationModel
from ultralytics.utils import RANK
from ultralytics.utils.loss import SemanticSegmentationLoss

from pipeline.training.photometric import PhotometricJitter

SMOOTH = 1.0
BOUNDARY_REACH = 8  # the boundary term's distances in 1/8 of the image's longer side, capped at 1


class ThinClassLoss(SemanticSegmentationLoss):
    """Cross-entropy (ignore 255; focal with ``gamma``) + mean over foreground classes of (1 - Tversky index)
    + ``boundary`` times the distance-weighted boundary term."""

    def __init__(self, model: torch.nn.Module, alpha: float = 0.5, beta: float = 0.5, gamma: float = 0.0,
                 boundary: float = 0.0):
        super().__init__(model)
        self.alpha, self.beta, self.gamma, self.boundary = alpha, beta, gamma, boundary

    def forward(self, preds, batch):
        total, items = super().forward(preds, batch)
        if not self.boundary:
            return total, items
        logits = preds[0] if isinstance(preds, tuple) else preds
        masks = batch["semantic_mask"].to(logits.device)
        if logits.shape[2:] != masks.shape[1:]:
            logits = F.interpolate(logits, size=masks.shape[1:], mode="bilinear", align_corners=False)
        term = self.boundary * self._boundary_loss(logits, masks)
        return total + term * logits.shape[0], {**items, "boundary_loss": term.detach()}

    def _boundary_loss(self, preds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Mean over valid pixels and foreground classes of the probability painted outside the class times
        its distance to it, plus the probability missing inside times its depth (see the module docstring)."""
        probabilities = F.softmax(preds.float(), dim=1)[:, 1:]
        outside, inside = signed_distances(masks.cpu().numpy(), self.nc)
        outside, inside = torch.from_numpy(outside).to(preds.device), torch.from_numpy(inside).to(preds.device)
        valid = (masks != 255)[:, None].float()
        per_pixel = outside * probabilities + inside * (1 - probabilities)
        return (per_pixel * valid).sum() / (valid.sum() * (self.nc - 1)).clamp_min(1)

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


def signed_distances(masks: np.ndarray, nc: int) -> tuple[np.ndarray, np.ndarray]:
    """For class maps ``masks`` [B, H, W]: per foreground class [B, nc - 1, H, W], each pixel's distance to
    the class (0 on it; 1 everywhere in a frame without it) and its depth inside it (0 outside), in
    ``1 / BOUNDARY_REACH`` of the longer side, capped at 1."""
    reach = max(masks.shape[1:]) / BOUNDARY_REACH
    outside = np.ones((masks.shape[0], nc - 1, *masks.shape[1:]), np.float32)
    inside = np.zeros_like(outside)
    for frame, class_map in enumerate(masks):
        for index in range(1, nc):
            member = (class_map == index).astype(np.uint8)
            if member.any():
                outside[frame, index - 1] = cv2.distanceTransform(1 - member, cv2.DIST_L2, 3) / reach
                inside[frame, index - 1] = cv2.distanceTransform(member, cv2.DIST_L2, 3) / reach
    return np.minimum(outside, 1), np.minimum(inside, 1)


class ThinClassSemanticModel(SemanticSegmentationModel):
    """Ultralytics' semantic model, trained with :class:`ThinClassLoss` (``tversky`` weights, focal ``gamma``,
    ``boundary`` weight)."""

    tversky = (0.5, 0.5)
    gamma = 0.0
    boundary = 0.0

    def init_criterion(self) -> ThinClassLoss:
        return ThinClassLoss(self, *self.tversky, gamma=self.gamma, boundary=self.boundary)


def thin_class_trainer(alpha: float = 0.5, beta: float = 0.5, gamma: float = 0.0,
                       boundary: float = 0.0, photometric: float = 0.0) -> type[SemanticSegmentationTrainer]:
    """Ultralytics' semantic trainer whose model learns with :class:`ThinClassLoss` (``alpha``, ``beta``, ``gamma``,
    ``boundary``), its training batches jittered by :class:`PhotometricJitter` at strength ``photometric`` (0: not)."""

    class ThinClassTrainer(SemanticSegmentationTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.jitter = PhotometricJitter(photometric, seed=self.args.seed) if photometric else None

        def preprocess_batch(self, batch: dict) -> dict:
            batch = super().preprocess_batch(batch)  # the validator preprocesses its own batches: never jittered
            if self.jitter is not None:
                batch["img"] = self.jitter(batch["img"])
            return batch

        def get_model(self, cfg=None, weights=None, verbose=True):
            model = ThinClassSemanticModel(cfg, nc=self.data["nc"], ch=self.data["channels"],
                                           verbose=verbose and RANK == -1)
            model.tversky, model.gamma, model.boundary = (alpha, beta), gamma, boundary
            model = self.set_model_names_for_load(model)
            if weights:
                model.load(weights)
            return model

    return ThinClassTrainer
