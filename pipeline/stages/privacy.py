"""The privacy stage, first after capture: is the camera inside the body, outside it, or showing nothing?

The out-of-body model (``pipeline/models/orsight-outofbody-lite0.onnx``, made by ``orsight
train-privacy``: docs/model-card.md) scores a 160x96 thumbnail: ImageNet EfficientNet-Lite0
features and a logistic head in the ONNX graph, plus colour statistics of a 64x36 thumbnail
(tissue is red to yellow; drapes, walls and steel are not) whose weights sit in the file's
metadata. A frame is ``blank`` when nine tenths of its thumbnail is one colour (black, a menu),
``outside`` when the model says "not inside" at the stored threshold, else ``inside``.

Over time the decision leans to safety: outside at once, back inside only after
``RETURN_AFTER`` consecutive confident inside scores. The model runs on every ``every``-th frame
(its cost spread thin at 60 fps), the decision held between; a frame that turns uniform is
caught on the frame itself.

    gate = PrivacyGate()                     # the shipped model
    packet = gate(packet)                    # packet.privacy: "inside", "outside" or "blank"
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.packet import FramePacket, timed
from pipeline.core.privacy import BLANK, INSIDE, OUTSIDE

MODEL = Path(__file__).resolve().parents[1] / "models" / "orsight-outofbody-lite0.onnx"
METADATA_KEY = "orsight_privacy"
INPUT_SIZE = (160, 96)  # the model's thumbnail, width x height (16:9, multiples of 32)
COLOUR_SIZE = (64, 36)
UNIFORM_SHARE, UNIFORM_LEVELS = 0.9, 16  # blank: this share of the thumbnail within this of its median colour
RETURN_AFTER = 3  # confident inside scores in a row before an outside view counts as inside again
CONFIDENT = 0.5  # ... confident: a "not inside" probability below this fraction of the threshold
EVERY = 3  # the model scores every this many frames by default


def thumbnails(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(model input (1, 3, 96, 160) RGB in [0, 1], 64x36 BGR thumbnail) of a BGR frame of any size."""
    step = max(1, min(image.shape[0] // (2 * INPUT_SIZE[1]), image.shape[1] // (2 * INPUT_SIZE[0])))
    small = image[::step, ::step]  # a cheap first cut; area averaging does the rest
    model_in = cv2.resize(small, INPUT_SIZE, interpolation=cv2.INTER_AREA)
    tensor = np.ascontiguousarray(model_in[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255
    return tensor, cv2.resize(model_in, COLOUR_SIZE, interpolation=cv2.INTER_AREA)


def colour_features(thumbnail: np.ndarray) -> np.ndarray:
    """21 colour statistics: a saturation-weighted hue histogram (12 bins) and the shares of tissue-red,
    blue, grey and dark pixels, mean saturation, brightness mean and spread, per-channel mean and spread."""
    pixels = thumbnail.reshape(-1, 3).astype(np.float32)
    hsv = cv2.cvtColor(thumbnail, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float32)
    hue, saturation, value = hsv[:, 0], hsv[:, 1] / 255, hsv[:, 2] / 255
    lit = value > 0.12
    count = max(int(lit.sum()), 1)
    histogram = np.bincount((hue[lit] // 15).astype(int), weights=saturation[lit], minlength=12)[:12] / count
    tissue = ((hue < 25) | (hue > 155)) & (saturation > 0.25) & lit
    blue = (hue > 85) & (hue < 135) & (saturation > 0.15) & lit
    grey = (saturation < 0.15) & lit
    shares = [tissue.mean(), blue.mean(), grey.mean(), 1 - lit.mean(), saturation[lit].mean() if lit.any() else 0.0,
              value.mean(), value.std()]
    return np.r_[histogram, shares, pixels.mean(0) / 255, pixels.std(0) / 255].astype(np.float32)


def glance(image: np.ndarray) -> np.ndarray:
    """About 64x36 pixels picked from the frame (no averaging): enough to see that it turned uniform."""
    return image[::max(1, image.shape[0] // COLOUR_SIZE[1]), ::max(1, image.shape[1] // COLOUR_SIZE[0])]


def is_uniform(thumbnail: np.ndarray) -> bool:
    """Nine tenths of the thumbnail one colour: a black frame, a menu screen, a lens cap."""
    pixels = thumbnail.reshape(-1, 3).astype(np.int16)
    near = np.abs(pixels - np.median(pixels, axis=0)).max(axis=1) <= UNIFORM_LEVELS
    return bool(near.mean() >= UNIFORM_SHARE)


@dataclass(frozen=True)
class Verdict:
    outside_probability: float  # "not inside", from the model
    uniform: bool

    def state(self, threshold: float) -> str:
        if self.uniform:
            return BLANK
        return OUTSIDE if self.outside_probability >= threshold else INSIDE


class OutOfBodyModel:
    """The out-of-body model file: ONNX graph (image -> logit of its part) and colour head (metadata)."""

    def __init__(self, path: str | Path = MODEL, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            head = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        except (KeyError, ValueError):
            raise ValueError(f"{path} is not an orsight out-of-body model (no {METADATA_KEY} metadata)") from None
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ValueError(f"cannot load out-of-body model {path}: {str(error).splitlines()[0][:200]}") from None
        self.colour_weights = np.asarray(head["colour_weights"], np.float32)
        self.bias, self.threshold = float(head["bias"]), float(head["threshold"])
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(path)

    def judge(self, image: np.ndarray) -> Verdict:
        tensor, thumbnail = thumbnails(image)
        if is_uniform(thumbnail):
            return Verdict(0.0, True)
        logit = float(self.session.run(None, {self.input_name: tensor})[0].ravel()[0])
        logit += float(colour_features(thumbnail) @ self.colour_weights) + self.bias
        return Verdict(float(1 / (1 + np.exp(-logit))), False)


class PrivacyGate:
    """Stage: ``packet.privacy`` from the model every ``every`` frames, held between, leaning to safety."""

    reads = ("image",)
    writes = ("privacy",)

    def __init__(self, model: OutOfBodyModel | None = None, every: int = EVERY):
        self.model = model or OutOfBodyModel()
        self.every = max(1, every)
        self.state, self.inside_run, self.seen = INSIDE, RETURN_AFTER, 0

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "privacy"):
            if self.seen % self.every == 0:
                self.state = self._next_state(self.model.judge(packet.image))
            elif self.state == INSIDE and is_uniform(glance(packet.image)):
                self.state = BLANK
            self.seen += 1
        packet.privacy = self.state
        return packet

    def _next_state(self, verdict: Verdict) -> str:
        found = verdict.state(self.model.threshold)
        if found != INSIDE:
            self.inside_run = 0
            return found
        confident = verdict.outside_probability < CONFIDENT * self.model.threshold
        self.inside_run = self.inside_run + 1 if confident else 0
        if self.state == INSIDE or self.inside_run >= RETURN_AFTER:
            return INSIDE
        return self.state

