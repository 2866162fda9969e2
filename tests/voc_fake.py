"""A small, seeded fake PASCAL VOC 2012 + SBD tree with click JSONs: test data for the VOC reader, clicks and benchmark.

Every class gets a fixed colour and one of three shapes (ellipse, rectangle, triangle) on a noisy grey
background, so a tiny network can learn something in a few steps. The tree mirrors the real one::

    <root>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
                            /Annotations/<id>.xml            every object, some difficult, person parts
                            /SegmentationClass/<id>.png      palette PNG, 255 band around every object
                            /SegmentationClassAug/<id>.png   grayscale PNG, no 255 (sbd_format png/both)
                            /ImageSets/Segmentation/{train,val,trainval,train_aug}.txt
    <root>/benchmark_RELEASE/dataset/cls/<id>.mat            GTcls.Segmentation (sbd_format mat/both)
    <root>/clicks_main.json, <root>/clicks_supp.json         Bearman et al. (ECCV 2016) format

VOC ``train`` images have ``SegmentationClass`` masks; the SBD-only images of ``train_aug`` have only
SBD masks, as in the real data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

import numpy as np
from scipy import ndimage
from skimage.draw import ellipse, polygon

from napari_pcam.core.data.voc import IGNORE_INDEX, VOC_CLASSES

SbdFormat = Literal["mat", "png", "both"]


@dataclass(frozen=True)
class FakeVoc:
    """Paths and ids of a generated tree (``voc_root`` and ``sbd_root`` are what the CLI takes)."""

    root: Path
    voc2012: Path
    sbd_root: Path
    clicks_json: Path
    supp_json: Path
    train_ids: tuple[str, ...]
    sbd_ids: tuple[str, ...]
    val_ids: tuple[str, ...]

    @property
    def voc_root(self) -> Path:
        return self.root

    @property
    def train_aug_ids(self) -> tuple[str, ...]:
        return self.train_ids + self.sbd_ids


def voc_palette() -> list[int]:
    """The 256-colour VOC palette (flat RGB list) used by ``SegmentationClass`` PNGs."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _class_colour(c: int) -> np.ndarray:
    hue = (c - 1) / 20.0
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return 0.15 + 0.8 * (1 - np.clip(np.minimum(k, 4 - k), 0, 1))  # HSV-like wheel, never black


def _draw_object(c: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    ry, rx = rng.uniform(0.18, 0.3) * h, rng.uniform(0.18, 0.3) * w
    cy, cx = rng.uniform(ry + 2, h - ry - 2), rng.uniform(rx + 2, w - rx - 2)
    mask = np.zeros(shape, bool)
    kind = c % 3
    if kind == 0:
        mask[ellipse(cy, cx, ry, rx, shape=shape)] = True
    elif kind == 1:
        mask[int(cy - ry) : int(cy + ry), int(cx - rx) : int(cx + rx)] = True
    else:
        mask[polygon([cy - ry, cy + ry, cy + ry], [cx, cx - rx, cx + rx], shape=shape)] = True
    return mask


def _make_image(classes: list[int], shape: tuple[int, int], rng: np.random.Generator):
    """(uint8 RGB image, int64 mask without borders, list of (class, object mask))."""
    img = 0.45 + 0.1 * rng.standard_normal((*shape, 1)) + 0.05 * rng.standard_normal((*shape, 3))
    mask = np.zeros(shape, np.int64)
    objects = []
    for c in classes:
        obj = _draw_object(c, shape, rng)
        img[obj] = _class_colour(c) + 0.05 * rng.standard_normal((int(obj.sum()), 3))
        mask[obj] = c
        for _, other in objects:
            other &= ~obj  # the later object occludes
        objects.append((c, obj))
    img = np.clip(img * 255, 0, 255).astype(np.uint8)
    for _, obj in objects:
        if obj.sum() <= 8:  # an almost hidden object: neither labelled nor clicked
            mask[obj] = IGNORE_INDEX
    return img, mask, [(c, o) for c, o in objects if o.sum() > 8]


def _with_borders(mask: np.ndarray, objects: list[tuple[int, np.ndarray]]) -> np.ndarray:
    out = mask.copy()
    for _, obj in objects:
        band = ndimage.binary_dilation(obj, iterations=1) & ~ndimage.binary_erosion(obj, iterations=1)
        out[band] = IGNORE_INDEX
    return out


def _xml(image_id: str, shape: tuple[int, int], objects, rng: np.random.Generator) -> str:
    parts = [f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename>"]
    parts.append(f"<size><width>{shape[1]}</width><height>{shape[0]}</height><depth>3</depth></size>")
    for c, obj in objects:
        ys, xs = np.nonzero(obj)
        x0, y0, x1, y1 = xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1  # VOC boxes are 1-based
        box = f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
        part = f"<part><name>head</name><bndbox>{box}</bndbox></part>" if VOC_CLASSES[c] == "person" else ""
        difficult = int(rng.random() < 0.2)
        parts.append(
            f"<object><name>{escape(VOC_CLASSES[c])}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox>{box}</bndbox>{part}</object>"
        )
    return "".join(parts) + "</annotation>\n"


def _clicks(objects, rng: np.random.Generator, n_workers: int = 1) -> list[dict]:
    """One click per object (rank = instance number of its class) for each worker."""
    out = []
    for _ in range(n_workers):
        ranks: dict[int, int] = {}
        for c, obj in objects:
            inner = ndimage.binary_erosion(obj, iterations=2)
            ys, xs = np.nonzero(inner if inner.any() else obj)
            k = rng.integers(len(ys))
            ranks[c] = ranks.get(c, 0) + 1
            x, y = xs[k] + rng.uniform(0, 0.9), ys[k] + rng.uniform(0, 0.9)
            out.append({"x": float(x), "y": float(y), "rank": ranks[c], "cls": int(c)})
    return out


def _write_palette_png(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    im = Image.fromarray(mask.astype(np.uint8))
    im.putpalette(voc_palette())  # turns the L image into a palette image with the same indices
    im.save(path)


def make_voc_tree(
    root: str | Path,
    n_per_class: int = 2,
    seed: int = 0,
    *,
    n_val_per_class: int = 1,
    n_classes: int = 20,
    size: tuple[int, int] = (64, 96),
    sbd_format: SbdFormat = "both",
    second_object: float = 0.4,
) -> FakeVoc:
    """Write a fake VOC 2012 + SBD tree with click JSONs under ``root``.

    Args:
        root: Output folder (created; existing files of the same names are overwritten).
        n_per_class: ``train_aug`` images per class whose first object is that class; even-numbered ones
            are VOC ``train`` images, odd-numbered ones SBD-only.
        seed: Seed; equal arguments give identical trees.
        n_val_per_class: ``val`` images per class.
        n_classes: Use only the first ``n_classes`` VOC classes (1-20).
        size: Range (inclusive) of image heights and widths in pixels.
        sbd_format: SBD masks as ``.mat`` files, a ``SegmentationClassAug`` PNG folder, or both.
        second_object: Probability of a second object (any class, possibly the same) in an image.
    """
    if not 1 <= n_classes <= 20 or n_per_class < 1 or n_val_per_class < 0:
        raise ValueError("need 1 <= n_classes <= 20, n_per_class >= 1 and n_val_per_class >= 0.")
    if sbd_format not in ("mat", "png", "both"):
        raise ValueError(f"sbd_format must be 'mat', 'png' or 'both', not {sbd_format!r}.")
    rng = np.random.default_rng(seed)
    root = Path(root)
    voc2012, sbd_cls = root / "VOCdevkit" / "VOC2012", root / "benchmark_RELEASE" / "dataset" / "cls"
    folders = ["JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"]
    folders += ["SegmentationClassAug"] if sbd_format != "mat" else []
    for folder in folders:
        (voc2012 / folder).mkdir(parents=True, exist_ok=True)
    if sbd_format != "png":
        sbd_cls.mkdir(parents=True, exist_ok=True)
    roles: dict[str, list[str]] = {"train": [], "sbd": [], "val": []}
    main, supp = {}, {}
    for c in range(1, n_classes + 1):
        for k in range(n_per_class + n_val_per_class):
            role = "val" if k >= n_per_class else ("sbd" if k % 2 else "train")
            image_id = f"2099_{c:02d}{k:04d}"
            roles[role].append(image_id)
            classes = [c] + ([int(rng.integers(1, n_classes + 1))] if rng.random() < second_object else [])
            shape = (int(rng.integers(size[0], size[1] + 1)), int(rng.integers(size[0], size[1] + 1)))
            objects = _write_image(voc2012, sbd_cls, image_id, role, classes, shape, sbd_format, rng)
            main[image_id] = _clicks(objects, rng)
            supp[image_id] = [d for d in _clicks(objects, rng, n_workers=2) if d["rank"] == 1]
    _write_splits(voc2012 / "ImageSets" / "Segmentation", roles)
    (root / "clicks_main.json").write_text(json.dumps(main), encoding="utf-8")
    (root / "clicks_supp.json").write_text(json.dumps(supp), encoding="utf-8")
    sbd_root = root / "benchmark_RELEASE" if sbd_format != "png" else voc2012 / "SegmentationClassAug"
    return FakeVoc(
        root, voc2012, sbd_root, root / "clicks_main.json", root / "clicks_supp.json",
        tuple(roles["train"]), tuple(roles["sbd"]), tuple(roles["val"]),
    )  # fmt: skip


def _write_image(
    voc2012: Path, sbd_cls: Path, image_id: str, role: str, classes: list[int], shape: tuple[int, int],
    sbd_format: SbdFormat, rng: np.random.Generator,
) -> list[tuple[int, np.ndarray]]:  # fmt: skip
    """Write the JPEG, XML and masks of one image; return its visible objects."""
    from PIL import Image

    img, mask, objects = _make_image(classes, shape, rng)
    Image.fromarray(img).save(voc2012 / "JPEGImages" / f"{image_id}.jpg", quality=92)
    (voc2012 / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, shape, objects, rng), encoding="utf-8")
    if role != "sbd":
        _write_palette_png(voc2012 / "SegmentationClass" / f"{image_id}.png", _with_borders(mask, objects))
    if sbd_format != "mat":
        Image.fromarray(mask.astype(np.uint8)).save(voc2012 / "SegmentationClassAug" / f"{image_id}.png")
    if sbd_format != "png" and role != "val":
        _write_mat(sbd_cls / f"{image_id}.mat", mask)
    return objects


def _write_mat(path: Path, mask: np.ndarray) -> None:
    from scipy.io import savemat

    present = np.unique(mask[mask > 0]).astype(np.uint8)
    savemat(path, {"GTcls": {"Segmentation": mask.astype(np.uint8), "CategoriesPresent": present}})


def _write_splits(folder: Path, roles: dict[str, list[str]]) -> None:
    lists = {
        "train": roles["train"],
        "val": roles["val"],
        "trainval": roles["train"] + roles["val"],
        "train_aug": roles["train"] + roles["sbd"],
    }
    for name, ids in lists.items():
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
