"""Training: ultralytics' trainer with defaults that work on a 2-core CPU and on a GPU.

    best = train("data/endoscapes/data.yaml", out="runs/vessels", epochs=100, imgsz=480)
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

RECIPE_FILE = "orsight-recipe.yaml"  # the semantic run's loss and jitter settings, for --resume


def train(data: str | Path, out: str | Path, arch: str = "yolo26n-seg", imgsz: int = 320, epochs: int = 30,
          batch: int | None = None, device: str = "cpu", seed: int = 0, resume: bool = False,
          names: tuple[str, ...] = ("instrument", "vessel"), init: str | Path | None = None,
          class_weight_power: float = 0.0, hours: float | None = None,
          tversky: tuple[float, float] = (0.5, 0.5), focal: float = 0.0, lr: float | None = None,
          boundary: float = 0.0, average: int = 0, degrees: float = 0.0, photometric: float = 0.0,
          weight_decay: float | None = None) -> Path:
    """Train (or ``resume`` the run in ``out``, a semantic one with the loss and jitter it started with); returns
    the best checkpoint. Seeded and deterministic.

    ``init``: a checkpoint to start from (e.g. phantom-pretrained weights) instead of ``arch`` from
    scratch; its layers that ``arch`` shares are taken over (an instance model's backbone and neck
    for a semantic one). ``class_weight_power`` (ultralytics' ``cls_pw``, 0-1): weight rare classes
    up by inverse frequency to this power (0: unweighted). ``hours``: stop after this long (the
    schedule is fitted to it: ultralytics' ``time``), for a GPU lent for minutes. ``lr``: the
    starting learning rate (default 1e-3 for the recipe below, ultralytics' own otherwise), lower
    for a fine-tuning stage that should keep what ``init`` learnt. ``average``: also write
    ``weights/averaged.pt``, the mean of the weights of the last ``average`` epochs (``averaging``;
    0: none; not for a resumed run). ``degrees``: turn each training picture by a random angle up to
    this many degrees either way (ultralytics' ``degrees``; a laparoscope turns about its axis).
    ``photometric``: semantic models: jitter each training picture's light colour, haze, focus and
    noise at this strength (``photometric``; 0: none, 1: the ranges documented there). ``weight_decay``:
    AdamW's decoupled weight decay on the weights, not biases or batch norm (default: ultralytics' 5e-4).

    Semantic models learn with orsight's thin-class loss (``tversky``: the weights of painted-wrongly and missed
    pixels, 0.5/0.5 = per-class Dice; ``focal``: the focal cross-entropy's gamma, 0 = plain cross-entropy;
    ``boundary``: the distance-weighted boundary term's weight, 0 = none; see ``thin_class``); the recipe: ``_recipe``.
    """
    from pipeline.training.averaging import average_last_epochs
    from pipeline.training.build import model_from_yaml

    out = Path(out).resolve()
    if resume:
        return _resume(out)
    _check_settings(lr, focal, boundary, average, degrees, photometric, weight_decay, init)
    model = model_from_yaml(arch, names=names, seed=seed)
    if model.task == "semantic" and "masks_dir" not in yaml.safe_load(Path(data).read_text()):
        raise ValueError(f"{arch} is a semantic model: train it on the semantic.yaml beside {Path(data).name}")
    if init is not None:
        model.load(str(init))  # every layer whose name and shape match (all of them for the same arch)
    batch = batch or (16 if device == "cpu" else 64)
    recipe = _recipe(model, arch, out, batch, lr, weight_decay, tversky, focal, boundary, photometric)
    model.add_callback("on_pretrain_routine_start", _train_on_every_core)
    if average:
        average_last_epochs(model, average)
    model.train(data=str(data), imgsz=imgsz, epochs=epochs, batch=batch,
                workers=2 if device == "cpu" else 8, device=device, seed=seed, deterministic=True,
                project=str(out.parent), name=out.name, exist_ok=True, plots=False, amp=device != "cpu",
                close_mosaic=max(1, epochs // 10), patience=max(20, epochs // 3), cls_pw=class_weight_power,
                degrees=degrees,
                **recipe, **({"time": hours} if hours else {}))
    return _trusted_outputs(out)


def _recipe(model, arch: str, out: Path, batch: int, lr, weight_decay, tversky, focal, boundary,
            photometric) -> dict:
    """ultralytics' settings of orsight's recipe for ``model`` (and a semantic model's loss, recorded in ``out``).

    nbs = batch: one optimiser step per batch (ultralytics' default accumulates to 64 images: on 343 frames with
    batch 8 that is 5 steps an epoch, and the pretrained model barely moves); no warm-up learning rate of 0.1 for
    biases (with Adam it wipes out the pretrained batch-norm shifts). Semantic models and the instance ones on the
    pretrained backbone (effnetliteN-seg); the thin-class loss for semantic ones.
    """
    from pipeline.training.efficientnet import EfficientNetLite
    from pipeline.training.thin_class import thin_class_trainer

    pretrained = any(isinstance(layer, EfficientNetLite) for layer in model.model.model)
    recipe = ({"mosaic": 0.0, "scale": 0.25, "optimizer": "AdamW", "lr0": 1e-3, "cos_lr": True, "warmup_epochs": 1,
               "warmup_bias_lr": 0.0, "nbs": batch} if model.task == "semantic" or pretrained else {})
    if lr is not None:
        recipe["lr0"] = lr
    if weight_decay is not None:
        recipe["weight_decay"] = weight_decay
    if model.task == "semantic":
        trainer_args = {"alpha": tversky[0], "beta": tversky[1], "gamma": focal, "boundary": boundary,
                        "photometric": photometric}  # thin_class_trainer's: the loss and the jitter
        out.mkdir(parents=True, exist_ok=True)
        (out / RECIPE_FILE).write_text(yaml.safe_dump(trainer_args))  # what --resume needs beside ultralytics' args
        recipe["trainer"] = thin_class_trainer(**trainer_args)
    elif photometric:
        raise ValueError(f"--photometric is for semantic models, not {arch}")
    return recipe


def _check_settings(lr, focal, boundary, average, degrees, photometric, weight_decay, init) -> None:
    """Each setting in its range (ValueError), and the checkpoint to start from there and trusted."""
    from pipeline.core.trust import require_trusted

    if lr is not None and not lr > 0:
        raise ValueError(f"the learning rate must be positive, not {lr}")
    if not focal >= 0:
        raise ValueError(f"the focal gamma must be 0 or more, not {focal}")
    if not boundary >= 0:
        raise ValueError(f"the boundary weight must be 0 or more, not {boundary}")
    if not average >= 0:
        raise ValueError(f"the number of epochs to average must be 0 or more, not {average}")
    if not 0 <= degrees <= 180:
        raise ValueError(f"the rotation must be 0-180 degrees, not {degrees}")
    if not photometric >= 0:
        raise ValueError(f"the photometric strength must be 0 or more, not {photometric}")
    if weight_decay is not None and not weight_decay >= 0:
        raise ValueError(f"the weight decay must be 0 or more, not {weight_decay}")
    if init is not None and not Path(init).is_file():
        raise FileNotFoundError(f"no such checkpoint to start from: {init}")
    if init is not None:
        require_trusted(init)


def _resume(out: Path) -> Path:
    """Go on with the run in ``out`` from its last checkpoint, with the loss and jitter it started with."""
    from pipeline.core.trust import require_trusted
    from pipeline.core.yolo import YOLO

    last = out / "weights" / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"nothing to resume: {last} does not exist")
    require_trusted(last)
    resumed = YOLO(str(last))
    resumed.add_callback("on_pretrain_routine_start", _train_on_every_core)
    resumed.train(resume=True, trainer=_recorded_trainer(out) if resumed.task == "semantic" else None)
    return _trusted_outputs(out)

def _recorded_trainer(out: Path):
    """The thin-class trainer a semantic run in ``out`` was started with (ultralytics' checkpoint keeps its own
    arguments, not the trainer class: resumed without it, the run would go on with ultralytics' default loss)."""
    from pipeline.training.thin_class import thin_class_trainer

    recorded = out / RECIPE_FILE
    if not recorded.is_file():
        raise FileNotFoundError(f"cannot resume {out} with its loss: no {RECIPE_FILE} there (a run from before "
                                f"orsight recorded it); start a new run with --init {out / 'weights' / 'last.pt'}")
    return thin_class_trainer(**yaml.safe_load(recorded.read_text()))


def _train_on_every_core(trainer) -> None:
    """On a CPU, torch gets every core: ultralytics gives it all but one, a single thread on 2 cores, and its
    loader processes leave the other core mostly idle; on every core it trains 1.65x faster there (5.2 vs 8.6 s
    a batch of 8 at 448 px, with or without the loader processes)."""
    if trainer.device.type == "cpu":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)


def _trusted_outputs(out: Path) -> Path:
    """The run's checkpoints go on the trusted list (this process wrote them); returns ``best.pt``."""
    from pipeline.core.trust import trust

    for checkpoint in (out / "weights").glob("*.pt"):
        trust(checkpoint)
    return out / "weights" / "best.pt"
