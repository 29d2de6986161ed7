"""The vessel's figures as a detector and as a probability: ROC of the frame evidence, detection and false
alarm at a threshold, pixel calibration (expected calibration error), and their plot.

    figures = vessel_report(evidence, present, samples, vessel_values, model.operating_points)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.evidence import OperatingPoint, OperatingPoints
from pipeline.stages.evidence import vessel_probability


def roc_auc(present: np.ndarray, absent: np.ndarray) -> float | None:
    """The chance that a frame with a vessel scores above one without (ties count half)."""
    if not len(present) or not len(absent):
        return None
    above = (present[:, None] > absent[None, :]).mean()
    ties = (present[:, None] == absent[None, :]).mean()
    return float(above + 0.5 * ties)


def rates(threshold: float, present: np.ndarray, absent: np.ndarray) -> OperatingPoint:
    return OperatingPoint(float(threshold), float((present >= threshold).mean()) if len(present) else 0.0,
                          float((absent >= threshold).mean()) if len(absent) else 0.0)


def sweep(present: np.ndarray, absent: np.ndarray) -> list[dict]:
    """Detection and false alarm at every distinct positive evidence value."""
    thresholds = np.unique(np.concatenate([present, absent]))
    return [vars(rates(t, present, absent)) for t in thresholds[thresholds > 0]]


def vessel_probabilities(samples: list, vessel_values: list[int],
                         temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(probability, is vessel) of every sampled pixel."""
    logits = np.concatenate([s[0] for s in samples])
    truth = np.isin(np.concatenate([s[1] for s in samples]), vessel_values)
    probability = vessel_probability(logits.T[:, :, None], vessel_values, temperature)[:, 0]
    return probability, truth


def log_loss(probability: np.ndarray, truth: np.ndarray) -> float:
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(truth, np.log(p), np.log(1 - p))))


def calibration_error(probability: np.ndarray, truth: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """Expected calibration error (equal-width bins, weighted by pixel count) and the reliability table."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(probability, edges) - 1, 0, bins - 1)
    table, error = [], 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            mean_p, frequency = float(probability[inside].mean()), float(truth[inside].mean())
            error += inside.mean() * abs(mean_p - frequency)
            table.append({"probability": round(mean_p, 4), "frequency": round(frequency, 4),
                          "pixels": int(inside.sum())})
    return float(error), table


def vessel_report(evidence: np.ndarray, present: np.ndarray, samples: list, vessel_values: list[int],
                  points: OperatingPoints | None) -> dict:
    """The vessel's frame-level and pixel-level figures for ``orsight eval``."""
    with_vessel, without = evidence[present], evidence[~present]
    report = {"evidence_with_vessel": [float(e) for e in with_vessel],
              "evidence_without_vessel": [float(e) for e in without],
              "evidence_roc_auc": roc_auc(with_vessel, without), "evidence_sweep": sweep(with_vessel, without),
              "temperature": points.temperature if points else 1.0, "operating_points": bool(points)}
    if samples:
        probability, truth = vessel_probabilities(samples, vessel_values, report["temperature"])
        report["pixel_ece"], report["reliability"] = calibration_error(probability, truth)
        report["pixel_log_loss"] = log_loss(probability, truth)
    for name in ("high", "advisory"):
        point = getattr(points, name) if points else None
        measured = rates(point.threshold, with_vessel, without) if point else None
        report[f"{name}_detected"] = measured.detected if measured else None
        report[f"{name}_false_alarm"] = measured.false_alarm if measured else None
    return report


def plot_vessel_report(vessel: dict, path: str | Path) -> Path:
    """ROC of the frame evidence with the model's points marked, and the pixel reliability diagram (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (roc, reliability) = plt.subplots(1, 2, figsize=(10, 4.6))
    curve = sorted(vessel["evidence_sweep"], key=lambda p: (p["false_alarm"], p["detected"]))
    roc.plot([0, *[p["false_alarm"] for p in curve], 1], [0, *[p["detected"] for p in curve], 1], "-", color="0.3")
    for tier, colour in (("high", "red"), ("advisory", "orange")):
        if vessel.get(f"{tier}_detected") is not None:
            roc.plot(vessel[f"{tier}_false_alarm"], vessel[f"{tier}_detected"], "o", color=colour,
                     label=f"{tier.upper()}: detected {vessel[f'{tier}_detected']:.0%}, false alarm "
                           f"{vessel[f'{tier}_false_alarm']:.0%}")
    auc = vessel["evidence_roc_auc"]
    roc.set(xlabel="frames without a vessel flagged", ylabel="frames with a vessel flagged", xlim=(0, 1), ylim=(0, 1),
            title=f"frame evidence ROC (AUC {auc:.2f})" if auc is not None else "frame evidence ROC")
    roc.legend(loc="lower right", fontsize=8)
    table = vessel.get("reliability", [])
    reliability.plot([0, 1], [0, 1], ":", color="0.5")
    reliability.plot([b["probability"] for b in table], [b["frequency"] for b in table], "o-")
    ece = vessel.get("pixel_ece")
    reliability.set(xlabel="vessel probability (calibrated)", ylabel="fraction of pixels that are vessel",
                    xlim=(0, 1), ylim=(0, 1), title=f"pixels, T={vessel['temperature']:.2f}" +
                    (f", ECE {ece:.3f}" if ece is not None else ""))
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

