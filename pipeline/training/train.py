"""Training: ultralytics' trainer with defaults that work on a 2-core CPU and on a GPU.

    best = train("data/endoscapes/data.yaml", out="runs/vessels", epochs=100, imgsz=480)
"""
from __future__ import annotations

from pathlib import Path


def train(data: str | Path, out: str | Path, arch: str = "yolo26n-seg", imgsz: int = 320, epochs: int = 30,
          batch: int | None = None, device: str = "cpu", seed: int = 0, resume: bool = False,
          names: tuple[str, ...] = ("instrument", "vessel"), init: str | Path | None = None) -> Path:
    """Train (or ``resume`` the run in ``out``); returns the best checkpoint. Seeded and deterministic.

    ``init``: a checkpoint to start from (e.g. phantom-pretrained weights) instead of ``arch`` from scratch.
    """
    from pipeline.yolo import YOLO, model_from_yaml

    out = Path(out).resolve()
    last = out / "weights" / "last.pt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist")
        YOLO(str(last)).train(resume=True)
        return out / "weights" / "best.pt"
    if init is not None and not Path(init).is_file():
        raise FileNotFoundError(f"no such checkpoint to start from: {init}")
    model = YOLO(str(init)) if init is not None else model_from_yaml(arch, names=names, seed=seed)
    model.train(data=str(data), imgsz=imgsz, epochs=epochs, batch=batch or (16 if device == "cpu" else 64),
                workers=2 if device == "cpu" else 8, device=device, seed=seed, deterministic=True,
                project=str(out.parent), name=out.name, exist_ok=True, plots=False, amp=device != "cpu",
                close_mosaic=max(1, epochs // 10), patience=max(20, epochs // 3))
    return out / "weights" / "best.pt"
