"""ResNet backbones with output stride 16, from an explicit registry.

Following IRNet (Ahn et al., CVPR 2019) the last downsampling stride of torchvision's ResNet is removed
(strides of conv1, layer2, layer3, layer4 = 2, 2, 2, 1) without dilation; DeepLabv3+ instead replaces
that stride by dilation (``dilate_last=True``). With ImageNet weights BatchNorm statistics stay frozen
(IRNet's FixedBatchNorm); from scratch BatchNorm trains.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from ..errors import ConfigError, WeightsUnavailableError


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one ResNet variant."""

    builder: Callable[..., torchvision.models.ResNet]
    weights: torchvision.models.WeightsEnum
    channels: tuple[int, int, int, int, int]  # stem, layer1..layer4


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, (64, 64, 128, 256, 512)
    ),
    "resnet34": BackboneSpec(
        torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1, (64, 64, 128, 256, 512)
    ),
    "resnet50": BackboneSpec(
        torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1, (64, 256, 512, 1024, 2048)
    ),
    "resnet101": BackboneSpec(
        torchvision.models.resnet101,
        torchvision.models.ResNet101_Weights.IMAGENET1K_V1,
        (64, 256, 512, 1024, 2048),
    ),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_spec(name: str) -> BackboneSpec:
    """Look up a backbone by name, with a clear error naming the valid ones."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def load_pretrained_state(name: str, weights: str) -> dict[str, torch.Tensor] | None:
    """Return the torchvision ResNet state dict for ``weights`` ('imagenet', 'none' or a file path).

    'imagenet' uses torchvision's weights enum, which reads torch.hub's cache and downloads when online.

    Raises:
        WeightsUnavailableError: offline without a cached file, or an unreadable file; the message says
            where to put the file or which option to pass instead. There is never a silent fallback.
    """
    if weights == "none":
        return None
    spec = get_spec(name)
    if weights == "imagenet":
        enum = spec.weights
        try:
            return enum.get_state_dict(progress=False, check_hash=False)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            file_name = enum.url.rsplit("/", 1)[-1]
            cache = Path(torch.hub.get_dir()) / "checkpoints" / file_name
            raise WeightsUnavailableError(
                f"ImageNet weights for {name} could not be downloaded ({exc.__class__.__name__}: {exc}). "
                f"Download {enum.url} on a machine with internet access and either copy it to {cache} "
                f"or pass its path as --weights /path/to/{file_name}; or train from scratch with --weights none."
            ) from exc
    return _load_state_file(Path(weights))


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} does not exist; pass 'imagenet', 'none' or the path of a torchvision "
            "ResNet .pth file."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise WeightsUnavailableError(f"weights file {str(path)!r} is not a readable PyTorch state dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"weights file {str(path)!r} does not hold a state dict of tensors.")
    return state


class Backbone(nn.Module):
    """A ResNet split into five stages: stem (stride 4), layer1 (4), layer2 (8), layer3 (16), layer4 (16).

    Args:
        name: Registry name ('resnet18', 'resnet34', 'resnet50', 'resnet101').
        weights: 'imagenet', 'none' or a path to a torchvision ResNet state dict.
        in_channels: Image channels. With pretrained weights and a channel count other than 3 the first
            convolution's RGB filters are averaged and repeated (scaled by 3 / in_channels).
        dilate_last: Replace layer4's stride by dilation 2 (DeepLabv3+) instead of removing it (IRNet).
        freeze_bn: Keep BatchNorm statistics and affine parameters fixed. None (default) follows the weights:
            frozen when pretrained (IRNet), trained from scratch. DeepLabv3+ passes False to fine-tune BN.
    """

    def __init__(
        self,
        *,
        name: str,
        weights: str = "imagenet",
        in_channels: int = 3,
        dilate_last: bool = False,
        freeze_bn: bool | None = None,
    ):
        super().__init__()
        spec = get_spec(name)
        net = spec.builder(weights=None)
        state = load_pretrained_state(name, weights)
        if state is not None:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise WeightsUnavailableError(
                    f"weights {weights!r} do not match {name}: missing {missing[:3]}, unexpected {unexpected[:3]}."
                )
        _remove_last_stride(net.layer4)
        if dilate_last:
            _dilate(net.layer4)
        if in_channels != 3:
            _adapt_first_conv(net, in_channels)
        self.name = name
        self.pretrained = state is not None
        self.freeze_bn = self.pretrained if freeze_bn is None else bool(freeze_bn)
        self.in_channels = in_channels
        self.channels = spec.channels
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    for p in module.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Backbone":
        """Switch mode; with frozen BatchNorm (``freeze_bn``) those layers always stay in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """float32 B x C x H x W -> the five stage outputs (strides 4, 4, 8, 16, 16)."""
        x0 = self.stem(x)
        x1 = self.layer1(x0)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]


def _remove_last_stride(layer: nn.Sequential) -> None:
    block = layer[0]
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if conv is not None and conv.stride == (2, 2):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def _dilate(layer: nn.Sequential, dilation: int = 2) -> None:
    """Dilate the 3x3 convolutions of a layer whose stride was removed, following torchvision's
    ``replace_stride_with_dilation``: the first block keeps dilation 1, the later blocks get ``dilation``.
    Works for BasicBlock (which torchvision cannot dilate) and Bottleneck alike."""
    for block in list(layer)[1:]:
        for conv in (block.conv1, block.conv2):
            if conv.kernel_size == (3, 3):
                conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def _adapt_first_conv(net: torchvision.models.ResNet, in_channels: int) -> None:
    old = net.conv1
    new = nn.Conv2d(in_channels, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    with torch.no_grad():
        mean = old.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
    net.conv1 = new
