"""DeepLabv3+ on the encoder registry, the final segmentation network of the chain.

Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable Convolution for Semantic
Image Segmentation" (DeepLabv3+), ECCV 2018; the PCAM paper (McEver & Manjunath, section 3.3) trains it
on the refined pseudo labels.

Layout (output stride 16): an encoder whose last stage uses dilation instead of its stride (ResNet:
layer4 with dilation 2); ASPP with rates 6, 12, 18 plus image pooling
(torchvision's :class:`~torchvision.models.segmentation.deeplabv3.ASPP`, 256 channels); the last stride-4
features (ResNet's layer1) projected to 48 channels and concatenated with the upsampled ASPP
output; two 3x3 convolutions of 256 channels; a 1x1 classifier; bilinear upsampling to the input size.
Plain convolutions are used (the paper's Xception variant uses separable ones); with ResNet-50 the model
has 40.4 M parameters for 21 classes, in line with published DeepLabv3+ R50 models (about 40 M).

The new layers (ASPP and decoder) normalise with BatchNorm, as the paper's batches of 16 crops allow, or with
GroupNorm (Wu & He, ECCV 2018; ``head_norm="group"``), which does not depend on the batch. With CPU batches
of a few small crops BatchNorm's statistics differ between training and inference, worst in ASPP's
image-pooling branch, whose BatchNorm sees one value per crop: DeepLabv3+ on dsb2018's true masks (300 steps
of 6 crops of 160 px, EfficientNet-Lite0) reached 63.1 held-out mIoU with BatchNorm and 82.7 with GroupNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from .encoders import Encoder

ASPP_RATES = (6, 12, 18)
ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48
DECODER_CHANNELS = 256


HEAD_NORMS = ("batch", "group")
MAX_GROUPS = 32  # GroupNorm's default of Wu & He (32 groups), fewer where the channels do not divide


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with the most groups, at most 32, that divide ``channels`` (256 -> 32, 48 -> 24)."""
    groups = next(g for g in range(min(MAX_GROUPS, channels), 0, -1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """A head normalisation layer: 'batch' (BatchNorm) or 'group' (:func:`group_norm`)."""
    if kind not in HEAD_NORMS:
        raise ValueError(f"head_norm={kind!r} is not valid; choose one of {', '.join(map(repr, HEAD_NORMS))}.")
    return nn.BatchNorm2d(channels) if kind == "batch" else group_norm(channels)


def _replace_batchnorm(module: nn.Module, kind: str) -> None:
    """Swap every BatchNorm2d inside ``module`` for ``norm_layer(kind, channels)`` (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, norm_layer(kind, child.num_features))
        else:
            _replace_batchnorm(child, kind)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        norm_layer(norm, out_ch),
        nn.ReLU(inplace=True),
    )


class DeepLabDecoder(nn.Module):
    """DeepLabv3+ decoder: fuse stride-16 ASPP features with projected stride-4 features.

    Args:
        low_level_channels: Channels of the stride-4 encoder features (ResNet's layer1).
        num_classes: Output classes, background included.
        norm: 'batch' or 'group' normalisation after each convolution.
    """

    def __init__(self, *, low_level_channels: int, num_classes: int, norm: str = "batch"):
        super().__init__()
        self.project = _conv_bn_relu(low_level_channels, LOW_LEVEL_CHANNELS, 1, norm)
        self.fuse = nn.Sequential(
            _conv_bn_relu(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, DECODER_CHANNELS, 3, norm),
            _conv_bn_relu(DECODER_CHANNELS, DECODER_CHANNELS, 3, norm),
        )
        self.classifier = nn.Conv2d(DECODER_CHANNELS, num_classes, 1)

    def forward(self, aspp: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """float32 B x 256 x h16 x w16 and B x C_low x h4 x w4 -> logits B x K x h4 x w4."""
        low = self.project(low)
        up = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([up, low], dim=1)))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ with an encoder at output stride 16.

    Args:
        backbone: Encoder registry name (see :data:`~napari_pcam.core.models.encoders.ENCODERS`).
        weights: 'imagenet', 'none' or a path to a state dict of that encoder.
        in_channels: Image channels.
        num_classes: Output classes, background included (K).
        freeze_bn: Freeze the encoder's BatchNorm. False (default) fine-tunes it, as the DeepLab papers do
            with batches of 16 crops; True keeps ImageNet statistics, better for batches of 1-4 crops.
            None follows the weights (frozen when pretrained, as in IRNet).
        head_norm: Normalisation of ASPP and decoder: 'batch' (BatchNorm, the paper's) or 'group' (GroupNorm,
            independent of the batch size; for small batches).
    """

    def __init__(
        self,
        *,
        backbone: str = "resnet50",
        weights: str = "imagenet",
        in_channels: int = 3,
        num_classes: int = 21,
        freeze_bn: bool | None = False,
        head_norm: str = "batch",
    ):
        super().__init__()
        norm_layer(head_norm, 1)  # the error for an unknown choice, before anything is built
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes={num_classes!r} must be an integer >= 2 (background + one class).")
        self.encoder = Encoder(
            name=backbone, weights=weights, in_channels=in_channels, dilate_last=True, freeze_bn=freeze_bn
        )
        channels = self.encoder.channels
        self.low_level = self.encoder.stage_index(4)
        self.aspp = ASPP(channels[4], list(ASPP_RATES), ASPP_CHANNELS)
        if head_norm != "batch":
            _replace_batchnorm(self.aspp, head_norm)
        self.decoder = DeepLabDecoder(low_level_channels=channels[self.low_level], num_classes=num_classes,
                                      norm=head_norm)
        self.head_norm = head_norm
        self.num_classes = num_classes
        self.in_channels = in_channels
        self._init_head()

    def _init_head(self) -> None:
        for module in [*self.aspp.modules(), *self.decoder.modules()]:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Small final layer: initial logits near 0, so the first loss is about log(K), not 5-10x that.
        nn.init.normal_(self.decoder.classifier.weight, std=0.01)

    def head_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of ASPP and decoder (newly initialised, never pretrained)."""
        return [p for p in [*self.aspp.parameters(), *self.decoder.parameters()] if p.requires_grad]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the encoder."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 B x C x H x W (any H, W >= 16; batches of 1 in eval mode) -> logits float32 B x K x H x W.

        With ``head_norm='batch'`` the ASPP image-pooling branch has BatchNorm on 1 x 1 maps, so training needs
        batches of 2 or more.
        """
        feats = self.encoder(x)
        logits = self.decoder(self.aspp(feats[4]), feats[self.low_level])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
