"""Training throughput of the PCAM stage next to a bare torchvision / timm forward + backward.

Both loops see batches of the same size. The bare loop is the encoder's own library model, built by the
library without napari-pcam's :class:`~napari_pcam.core.models.encoders.Encoder`: torchvision's ResNet
(last stride removed, so the arithmetic matches) with its pooling and linear head, or timm's
``features_only`` model at ``output_stride=16`` with global pooling and a linear head; cross-entropy and an
SGD step on random tensors. The ratio bare / ours is the overhead of our pipeline (the encoder interface,
data augmentation, point loss, upsampling, progress records).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..core.config import CamConfig, RuntimeConfig
from ..core.data.synthetic import make_synthetic
from ..core.models.encoders import _remove_last_stride, get_spec
from ..core.stages.cam import train_cam


def _ours(backbone: str, size: int, batch: int, steps: int, warmup: int, seed: int) -> float:
    data = make_synthetic(max(batch, 4), size, seed=seed)
    cfg = CamConfig(backbone=backbone, weights="none", crop_size=size, batch_size=batch, epochs=1,
                    min_steps=warmup + steps, scale_range=(0.9, 1.1))
    gen = train_cam(data.images, data.points, cfg, runtime=RuntimeConfig(device="cpu", seed=seed))
    t0 = None
    for p in gen:
        if p.step == warmup:
            t0 = time.perf_counter()
    return steps * batch / (time.perf_counter() - t0)


class _TimmBare(torch.nn.Module):
    def __init__(self, model_name: str):
        import timm

        super().__init__()
        self.features = timm.create_model(model_name, features_only=True, out_indices=(4,), output_stride=16)
        self.head = torch.nn.Linear(self.features.feature_info.channels()[-1], 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1].mean((2, 3)))


def bare_model(name: str) -> torch.nn.Module:
    """The library's own network for encoder ``name`` (stride 16, a 3-class head), without our wrapper."""
    spec = get_spec(name)
    if spec.family == "timm":
        return _TimmBare(spec.model)
    net = spec.model(weights=None, num_classes=3)
    _remove_last_stride(net.layer4)
    return net


def _bare(backbone: str, size: int, batch: int, steps: int, warmup: int, seed: int) -> float:
    torch.manual_seed(seed)
    net = bare_model(backbone).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 3, (batch,))
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def benchmark_throughput(
    backbones: tuple[str, ...] = ("resnet18", "resnet50"),
    *,
    size: int = 256,
    batch: int = 8,
    steps: int = 5,
    warmup: int = 2,
    seed: int = 0,
) -> list[dict]:
    """Images/s of PCAM training and of the bare loop for each backbone (CPU)."""
    rows = []
    for name in backbones:
        ours = _ours(name, size, batch, steps, warmup, seed)
        bare = _bare(name, size, batch, steps, warmup, seed)
        rows.append({
            "backbone": name,
            "input": size,
            "batch": batch,
            "threads": torch.get_num_threads(),
            "pcam_images_per_s": round(ours, 3),
            "bare_images_per_s": round(bare, 3),
            "overhead_ratio": round(bare / ours, 3) if ours > 0 else float(np.nan),
        })
    return rows
