"""Weight averaging: one model from the mean of the weights of a run's last epochs (stochastic weight
averaging, Izmailov et al. 2018), written beside best.pt and last.pt as ``weights/averaged.pt``.

On a few hundred frames one epoch's weights swing (the artery's val IoU moves by 0.06 between epochs
of one run), and ultralytics' own EMA hardly averages a short run: its decay ramps up over 2000 steps,
about 0.4 after 26 epochs of 43 steps. The mean is taken with torch's ``AveragedModel``; the batch-norm
statistics are then measured afresh on one pass over the training batches (``update_bn``), since the
mean of the weights does not match any epoch's running statistics.
"""
from __future__ import annotations

import os
from copy import deepcopy

import torch
from torch.optim.swa_utils import AveragedModel, update_bn


def average_last_epochs(model, epochs: int) -> None:
    """Add callbacks to the ultralytics ``model`` (before its ``train``) that average its EMA weights
    after each of the last ``epochs`` epochs and write ``weights/averaged.pt`` when training ends."""
    average: list[AveragedModel] = []  # made at the first epoch averaged

    def after_each_save(trainer) -> None:
        if trainer.epoch + 1 > trainer.epochs - epochs:
            if not average:
                average.append(AveragedModel(trainer.ema.ema))
            average[0].update_parameters(trainer.ema.ema)

    def at_the_end(trainer) -> None:
        if average:
            last = trainer.epoch + 1
            _write_averaged(trainer, average[0], (last - int(average[0].n_averaged) + 1, last))

    model.add_callback("on_model_save", after_each_save)
    model.add_callback("on_train_end", at_the_end)


def _write_averaged(trainer, average: AveragedModel, epochs: tuple[int, int]) -> None:
    """Refresh the mean's batch-norm statistics on the training batches, save it in the format of the
    final ``last.pt`` (ultralytics' ``strip_optimizer``; written whole, then renamed), and validate it
    like ``best.pt``."""
    from ultralytics.utils import LOGGER
    from ultralytics.utils.torch_utils import strip_optimizer

    with torch.no_grad():
        update_bn((trainer.preprocess_batch(batch)["img"] for batch in trainer.train_loader), average)
    checkpoint = torch.load(trainer.last, map_location="cpu", weights_only=False)
    target = trainer.wdir / "averaged.pt"
    partial = target.with_name(target.name + ".partial")
    torch.save({**checkpoint, "ema": deepcopy(average.module).cpu(), "averaged_epochs": epochs}, partial)
    strip_optimizer(partial)
    os.replace(partial, target)
    LOGGER.info(f"\nWeights of epochs {epochs[0]}-{epochs[1]} averaged into {target}; validating it...")
    trainer.validator(model=target)
