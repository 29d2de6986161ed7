"""Validated vessel operating points: calibrate the vessel probability, sweep the frame evidence, choose two points.

``orsight validate --data VAL --model IN --out OUT`` runs the model over labelled frames (``orsight eval``'s
own loop), then, by a rule fixed in advance (docs/alerts.md):

1. **Temperature**: the ``T`` that minimises the vessel pixels' binary log-loss of ``softmax(logits / T)``
   (temperature scaling; a search over 0.25-8).
2. **Frame evidence** with that ``T`` (``pipeline.stages.evidence``), each frame judged alone.
3. **HIGH**: the lowest threshold at which at most ``max_false_alarm`` (5 %) of the frames without a
   vessel reach it; none if it detects nothing. **ADVISORY**: the highest threshold at which at least
   ``min_detection`` (80 %) of the frames with a vessel reach it, never above HIGH's.

The points, their figures and the data they came from go into ``OUT``'s metadata (ONNX) or checkpoint
(``.pt``); ``export`` and ``quantize`` carry them over.

    points, report = validate("endoscapes/val", "model.onnx", "model-validated.onnx")
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.core.evidence import METADATA_KEY, OperatingPoint, OperatingPoints
from pipeline.training.vessel_metrics import log_loss, rates, vessel_probabilities

MAX_FALSE_ALARM = 0.05
MIN_DETECTION = 0.80
TEMPERATURES = np.exp(np.linspace(math.log(0.25), math.log(8.0), 121))
RULE = (f"T: least vessel log-loss over 0.25-8; HIGH: the lowest threshold with frame false alarm <= "
        f"{MAX_FALSE_ALARM:.0%}; ADVISORY: the highest with frame detection >= {MIN_DETECTION:.0%}, at most HIGH's")


def choose_points(present: np.ndarray, absent: np.ndarray, max_false_alarm: float = MAX_FALSE_ALARM,
                  min_detection: float = MIN_DETECTION) -> tuple[OperatingPoint | None, OperatingPoint | None]:
    """(HIGH, ADVISORY) by the rule in the module docstring."""
    candidates = np.unique(np.concatenate([present, absent]))
    candidates = np.append(candidates[candidates > 0], np.inf)
    # HIGH: the lowest threshold within the false-alarm limit (just above the absent frames it must exclude).
    absent_sorted = np.sort(absent)[::-1]
    allowed = math.floor(max_false_alarm * len(absent) + 1e-9)
    floor = absent_sorted[allowed] if allowed < len(absent_sorted) else 0.0
    above = candidates[candidates > floor]
    high = rates(above[0], present, absent) if len(above) and np.isfinite(above[0]) else None
    if high is not None and high.detected == 0:
        high = None
    # ADVISORY: the highest threshold that still detects enough.
    needed = math.ceil(min_detection * len(present) - 1e-9)
    present_sorted = np.sort(present)[::-1]
    threshold = present_sorted[needed - 1] if 0 < needed <= len(present) else 0.0
    threshold = max(threshold, float(candidates[0]) if np.isfinite(candidates[0]) else 1e-9)
    if high is not None:
        threshold = min(threshold, high.threshold)
    return high, rates(threshold, present, absent)


def fit_temperature(samples: list, vessel_values: list[int]) -> float:
    """Step 1 of the rule."""
    losses = [log_loss(*vessel_probabilities(samples, vessel_values, t)) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def validate(folder: str | Path, model_path: str | Path, out: str | Path, description: str | None = None,
             **eval_options) -> tuple[OperatingPoints, dict]:
    """Choose the operating points on the labelled frames in ``folder`` and write ``out``: ``model_path``
    with them. Returns them and the ``evaluate`` report at them."""
    from pipeline.stages.infer import load_model
    from pipeline.training.evaluate import evaluate

    model = load_model(model_path)
    vessel_values = [c + 1 for c, role in enumerate(model.roles) if role == "vessel"]
    if not vessel_values:
        raise ValueError(f"{model_path} has no vessel class (classes: {', '.join(model.names)})")
    model.operating_points = None
    samples: list = []
    evaluate(folder, model, samples=samples, **eval_options)
    temperature = fit_temperature(samples, vessel_values) if samples else 1.0
    model.operating_points = OperatingPoints(temperature, None, None, "", 0, 0, 0.0)
    first = evaluate(folder, model, **eval_options)
    vessel = first["classes"][model.names[vessel_values[0] - 1]]
    present, absent = np.array(vessel["evidence_with_vessel"]), np.array(vessel["evidence_without_vessel"])
    if not len(present) or not len(absent):
        raise ValueError(f"{folder}: the operating points need frames with and without a vessel "
                         f"({len(present)} with, {len(absent)} without)")
    high, advisory = choose_points(present, absent)
    points = OperatingPoints(temperature, high, advisory,
                             description or f"{Path(folder).name}: {first['frames']} frames",
                             len(present), len(absent), vessel["evidence_roc_auc"], RULE)
    model.operating_points = points
    write_points(model_path, out, points)
    return points, evaluate(folder, model, **eval_options)


def write_points(source: str | Path, out: str | Path, points: OperatingPoints) -> Path:
    """``source`` (.onnx or .pt) copied to ``out`` with ``points`` in its metadata (written whole, then renamed)."""
    source, out = Path(source), Path(out)
    partial = out.with_name(out.name + ".partial")
    if source.suffix == ".onnx":
        import onnx

        model = onnx.load(str(source))
        kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
        del model.metadata_props[:]
        for key, value in [*kept, (METADATA_KEY, points.to_json())]:
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(partial))
    else:
        import torch

        from pipeline.core.trust import load_checkpoint

        checkpoint = load_checkpoint(source)
        checkpoint[METADATA_KEY] = points.to_json()
        torch.save(checkpoint, str(partial))
    partial.replace(out)
    if out.suffix == ".pt":
        from pipeline.core.trust import trust

        trust(out)  # this process wrote it from a trusted checkpoint
    return out
