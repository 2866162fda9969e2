"""IRNet's inter-pixel relation network (Ahn et al., CVPR 2019) on the shared :class:`Encoder`.

Two branches read the five encoder stages (ResNet strides 4, 4, 8, 16, 16; stages finer than stride 4,
such as EfficientNet's stride-2 stem, are average-pooled to stride 4):

* class boundary: each stage -> 1x1 conv to 32 channels, GroupNorm(4), ReLU, upsampled to stride 4,
  concatenated (160 channels) -> 1x1 conv to one boundary logit;
* displacement (for instance masks): 1x1 convs to 64/128/256/256/256 channels with GroupNorm; the three
  deep stages are merged at stride 8, upsampled and merged with the two shallow ones at stride 4, then a
  1x1 conv to a 2-channel displacement field (dy, dx, in stride-4 pixels) minus a stored mean shift.

As in IRNet the backbone is frozen (no gradients, BatchNorm in eval mode) by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Encoder

EDGE_CHANNELS = 32
DISP_CHANNELS = (64, 128, 256, 256, 256)


def _head(cin: int, cout: int) -> nn.Sequential:
    groups = 4 if cout == 32 else (8 if cout == 64 else 16)
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling, area averaging when shrinking."""
    if x.shape[-2:] == size:
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class IrnNet(nn.Module):
    """Boundary and displacement branches on an encoder.

    Args:
        backbone: Encoder registry name.
        weights: Backbone weights ('imagenet', 'none' or a path).
        in_channels: Image channels.
        displacement: Build the displacement branch (needed for instance masks).
        freeze_backbone: Keep the backbone fixed (IRNet); otherwise it trains with the branches.
    """

    def __init__(
        self,
        *,
        backbone: str = "resnet50",
        weights: str = "imagenet",
        in_channels: int = 3,
        displacement: bool = True,
        freeze_backbone: bool = True,
    ):
        super().__init__()
        self.backbone = Encoder(name=backbone, weights=weights, in_channels=in_channels)
        self.freeze_backbone = freeze_backbone
        self.has_displacement = displacement
        ch = self.backbone.channels
        self.edge_heads = nn.ModuleList(_head(c, EDGE_CHANNELS) for c in ch)
        self.edge_out = nn.Conv2d(EDGE_CHANNELS * len(ch), 1, 1, bias=True)
        if displacement:
            self.dp_heads = nn.ModuleList(_head(c, o) for c, o in zip(ch, DISP_CHANNELS))
            self.dp_deep = _head(sum(DISP_CHANNELS[2:]), 256)
            self.dp_out = nn.Sequential(_head(DISP_CHANNELS[0] + DISP_CHANNELS[1] + 256, 256),
                                        nn.Conv2d(256, 2, 1, bias=False))
            self.register_buffer("dp_mean", torch.zeros(2))
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "IrnNet":
        """Switch mode; a frozen backbone always stays in eval mode."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def branch_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside the backbone."""
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images -> boundary logits and displacement.

        Args:
            x: float32 B x C x H x W normalised images.

        Returns:
            ``(edge, disp)``: float32 B x 1 x ceil(H/4) x ceil(W/4) boundary logits, and float32
            B x 2 x ceil(H/4) x ceil(W/4) displacement (None without the displacement branch). In eval
            mode the stored mean displacement is subtracted (IRNet's MeanShift).
        """
        if self.freeze_backbone:
            with torch.no_grad():
                feats = [f.detach() for f in self.backbone(x)]
        else:
            feats = self.backbone(x)
        size = tuple(feats[self.backbone.stage_index(4)].shape[-2:])
        edge = torch.cat([_resize(h(f), size) for h, f in zip(self.edge_heads, feats)], 1)
        edge = self.edge_out(edge)
        if not self.has_displacement:
            return edge, None
        dps = [h(f) for h, f in zip(self.dp_heads, feats)]
        mid = tuple(dps[2].shape[-2:])
        deep = self.dp_deep(torch.cat([dps[2], _resize(dps[3], mid), _resize(dps[4], mid)], 1))
        disp = self.dp_out(torch.cat([_resize(dps[0], size), _resize(dps[1], size), _resize(deep, size)], 1))
        if not self.training:
            disp = disp - self.dp_mean.view(1, 2, 1, 1)
        return edge, disp
