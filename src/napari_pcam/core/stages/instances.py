"""Instance masks from IRNet's displacement field (Ahn et al., CVPR 2019, ``make_ins_seg_labels``).

Every stride-4 pixel follows the (bilinearly sampled) displacement field to its instance centroid;
pixels whose centroids land in the same connected region of short displacements form one group. Each
class map is split into one map per group, all maps are propagated with the random walk, and the argmax
(with a constant background plane) gives one mask per (class, group); its connected components become
the instances. Used to count objects (cells, crystals, ...).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.measure import label as connected_components

from ..config import RandomWalkConfig
from ..data.cams import CamMaps
from ..device import resolve_device
from ..models.irn import IrnNet
from .random_walk import _check_cams, predict_boundary, random_walk, up4


def find_centroids(displacement: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Follow the displacement field from every pixel.

    Args:
        displacement: float (2, h, w) displacement (dy, dx) in stride-4 pixels.
        iterations: Steps; each moves a point by the displacement sampled bilinearly at its position.

    Returns:
        int64 (2, h, w): rounded centroid (y, x) reached from every pixel, inside the grid.
    """
    _, h, w = displacement.shape
    pos = np.mgrid[:h, :w].astype(np.float64)
    for _ in range(iterations):
        step = np.stack([ndimage.map_coordinates(d, pos, order=1, mode="nearest") for d in displacement])
        pos = pos + step
        pos[0] = np.clip(pos[0], 0, h - 1)
        pos[1] = np.clip(pos[1], 0, w - 1)
    return np.rint(pos).astype(np.int64)


def cluster_centroids(centroids: np.ndarray, displacement: np.ndarray, threshold: float = 2.5) -> np.ndarray:
    """Group pixels by the region of short displacements their centroid lands in.

    Args:
        centroids: int (2, h, w) from :func:`find_centroids`.
        displacement: float (2, h, w).
        threshold: Displacement length below which a pixel belongs to a centre region.

    Returns:
        int64 (h, w) group ids 0..n-1 (consecutive); pixels whose centroid lies outside every centre
        region share one group, as in IRNet.
    """
    weak = np.hypot(displacement[0], displacement[1]) < threshold
    regions = connected_components(weak, connectivity=1, background=0)
    groups = regions[centroids[0], centroids[1]]
    _, compact = np.unique(groups, return_inverse=True)
    return compact.reshape(groups.shape).astype(np.int64)


@torch.no_grad()
def refine_instances(
    image: np.ndarray, cams: CamMaps, model: IrnNet, *, config: RandomWalkConfig, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Instance label image of one image.

    Args:
        image: H x W x C image.
        cams: Its CAMs (stride-4 ``lowres`` maps are used).
        model: IRNet trained with the displacement branch.
        config: Random-walk and instance settings.
        device: Where to run.

    Returns:
        ``(instances, classes)``: int32 (H, W) with 0 = background and 1..n one id per instance, and
        int64 (n,) the class id of instance ``i + 1``.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    _check_cams(image, cams)
    boundary, disp = predict_boundary(model, image, device=device, flip=config.flip)
    if disp is None:
        raise ValueError("instance masks need an IRNet with the displacement branch (irn.displacement=True).")
    disp_np = disp.cpu().numpy().astype(np.float64)
    groups = cluster_centroids(find_centroids(disp_np, config.centroid_iterations), disp_np, config.cluster_threshold)
    n_groups = int(groups.max()) + 1
    onehot = torch.from_numpy(np.eye(n_groups, dtype=np.float32)[groups]).permute(2, 0, 1).to(device)
    fg = np.asarray(cams.keys) > 0  # a learnt background map has no instances: the constant plane stays
    lowres = torch.from_numpy(np.asarray(cams.lowres, np.float32)[fg]).to(device)
    split = (lowres[:, None] * onehot[None]).reshape(-1, *groups.shape)  # (K * n_groups) x h x w
    rw = random_walk(split, boundary, beta=config.beta, exp_times=config.exp_times, radius=config.radius)
    scores = up4(rw, image.shape[:2])
    scores = scores / scores.max().clamp_min(1e-5) if scores.numel() else scores
    bg = torch.full((1, *image.shape[:2]), config.instance_bg_threshold, dtype=scores.dtype, device=scores.device)
    winner = torch.argmax(torch.cat([bg, scores]), 0).cpu().numpy()
    return _label_instances(winner, np.asarray(cams.keys, np.int64)[fg], n_groups, config.min_instance_area)


def _label_instances(
    winner: np.ndarray, keys: np.ndarray, n_groups: int, min_area: int
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of every (class, group) channel -> instance ids and their classes."""
    instances = np.zeros(winner.shape, np.int32)
    classes = []
    for channel in np.unique(winner[winner > 0]):
        comps, n = ndimage.label(winner == channel)
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        for comp in range(1, n + 1):
            if sizes[comp] >= max(min_area, 1):
                classes.append(int(keys[(channel - 1) // n_groups]))
                instances[comps == comp] = len(classes)
    return instances, np.asarray(classes, np.int64)
