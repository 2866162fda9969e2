"""The CAM classifier of IRNet/PCAM: encoder features, a bias-free 1x1 classifier and global average pooling.

Because the classifier is linear and has no bias, the global average of the map before the ReLU equals
the logits, so one forward pass gives both the image-level scores and the class activation maps
(Zhou et al., CVPR 2016; Ahn et al., CVPR 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Encoder


class CamNet(nn.Module):
    """Encoder (output stride 16, last stride removed) + ``Conv2d(channels, num_classes, 1, bias=False)``.

    Args:
        backbone: Encoder registry name (see :data:`~napari_pcam.core.models.encoders.ENCODERS`).
        weights: 'imagenet', 'none' or a path to a state dict of that encoder.
        in_channels: Image channels.
        num_classes: Foreground classes.
        background: Also learn a background map (one more classifier row, the last): the clicked background
            is a class like the others instead of a constant score (not in the paper).

    With pretrained weights the stages up to stride 8 are frozen (IRNet detaches after ResNet's layer2)
    and BatchNorm statistics stay fixed; from scratch everything trains.
    """

    def __init__(self, *, backbone: str = "resnet50", weights: str = "imagenet", in_channels: int = 3,
                 num_classes: int, background: bool = False):
        super().__init__()
        self.backbone = Encoder(name=backbone, weights=weights, in_channels=in_channels)
        self.classifier = nn.Conv2d(self.backbone.channels[-1], num_classes + int(background), 1, bias=False)
        self.num_classes = num_classes
        self.background = background
        if self.backbone.pretrained:
            self.backbone.freeze_stages()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float32 B x C x H x W -> B x F x ceil(H/16) x ceil(W/16) last-stage features."""
        return self.backbone(x)[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits B x M, raw maps B x M x h x w before ReLU); logits = spatial mean of the maps.

        M = K foreground maps, plus the background map last when ``background``."""
        maps = self.classifier(self.features(x))
        return maps.mean(dim=(2, 3)), maps

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU class activation maps, B x M x ceil(H/16) x ceil(W/16) (M as :meth:`forward`)."""
        return F.relu(F.conv2d(self.features(x), self.classifier.weight))

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(trainable backbone parameters, classifier parameters)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return backbone, list(self.classifier.parameters())
