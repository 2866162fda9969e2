"""What should the final DeepLabv3+ learn from, and how? The experiment harness behind the final-stage numbers of
the README's *Measured on real data* (issue 13): one DeepLabv3+ (the package's ``DeepLabV3Plus``, ImageNet
EfficientNet-Lite0) trained on one real set's true masks, its clicks, or a folder of pseudo labels (e.g. a run
folder's ``mined/``), optionally with the clicks as a weighted second cross-entropy, the gated CRF loss, GroupNorm
in ASPP and the decoder, and per-image contrast stretching of the input; scored on the held-out images at one or
more tile sizes, with dsb2018's modalities (fluorescence, H&E, brightfield) apart. ``crf`` puts a saved model's
tiled probabilities through the package's dense CRF.

Experiment code, outside the pipeline: a plain training loop (SGD Nesterov, poly schedule, random scale 0.5-2,
crops, flips), crops around clicks when learning from clicks alone, and its own copy of the gated CRF loss (the
one ``core/crf_loss.py`` was written from; ``--crf-stretch`` is the crop stretch the package uses). Every run
appends one JSON line to ``OUT/results.jsonl`` and saves its model to ``OUT/models/``.

    python scripts/deeplab_experiments.py train dsb2018 --data ../shared/data --out exp --labels clicks \\
        --head-norm gn --tiles 320 --crf-loss 0.01 --crf-stretch --threads 1 --tag po-crf
    python scripts/deeplab_experiments.py crf dsb2018 po-crf --data ../shared/data --out exp
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IGNORE = 255


# ---------------------------------------------------------------------------------------------- data and scores
def load(root: Path, ds: str, cache: Path) -> dict:
    """Images, masks and (training) clicks of ``root/ds/{train,val}``, cached as a pickle in ``cache``."""
    path = cache / f"{ds}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    out: dict = {}
    for split in ("train", "val"):
        files = sorted((root / ds / split / "images").iterdir())
        stems = [f.stem for f in files]
        images = [np.array(Image.open(f).convert("RGB")) for f in files]
        masks = [np.array(Image.open(next((root / ds / split / "masks").glob(f"{s}.*")))) for s in stems]
        out[split] = {"names": stems, "images": images, "masks": masks}
    points: dict[str, list] = {s: [] for s in out["train"]["names"]}
    with open(root / ds / "train" / "points.csv") as f:
        for r in csv.DictReader(f):
            points[r["image"]].append((int(float(r["y"])), int(float(r["x"])), int(r["class"])))
    out["train"]["points"] = [np.array(points[s], np.int64).reshape(-1, 3) for s in out["train"]["names"]]
    out["num_classes"] = int(max(m[m != IGNORE].max() for m in out["train"]["masks"])) + 1
    cache.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(out, f)
    return out


def miou(gts, preds, n: int) -> tuple[float, list[float]]:
    """mIoU over the classes present in ground truth or prediction, and the per-class IoUs (percent)."""
    conf = np.zeros((n, n), np.int64)
    for g, p in zip(gts, preds):
        g, p = g.ravel().astype(np.int64), p.ravel().astype(np.int64)
        k = g != IGNORE
        conf += np.bincount(n * g[k] + p[k], minlength=n * n).reshape(n, n)
    d = np.diag(conf)
    iou = d / np.maximum(conf.sum(0) + conf.sum(1) - d, 1)
    present = (conf.sum(1) + conf.sum(0)) > 0
    return float(iou[present].mean() * 100), (iou * 100).round(1).tolist()


def sparse_labels(shape, points, radius: int = 0) -> np.ndarray:
    """IGNORE everywhere but at the clicks (squares of side 2 radius + 1)."""
    lab = np.full(shape, IGNORE, np.uint8)
    for y, x, c in points:
        lab[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1] = c
    return lab


def modality(im: np.ndarray) -> str:
    """dsb2018's three looks, told apart by brightness and colour: 'fluo', 'he' or 'bright'."""
    if im.mean() < 60:
        return "fluo"
    r, b = im[..., 0].mean(), im[..., 2].mean()
    return "he" if abs(r - b) > 10 else "bright"


def groups_report(ds: str, split: dict, preds, n: int) -> dict:
    if ds != "dsb2018":
        return {}
    out = {}
    for g in ("fluo", "he", "bright"):
        idx = [i for i, im in enumerate(split["images"]) if modality(im) == g]
        if idx:
            out[g] = round(miou([split["masks"][i] for i in idx], [preds[i] for i in idx], n)[0], 1)
    return out


def stretch_image(im: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(im, (0.5, 99.5))
    return (np.clip((im.astype(np.float32) - lo) / max(hi - lo, 1), 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------- gated CRF loss
def gated_crf_loss(logits, x, valid=None, *, down=2, radius=5, sigma_xy=6.0, sigma_rgb=0.1, stretch=False):
    """Local (gated) CRF loss of Obukhov et al. 2019: the sum over neighbour pairs of a bilateral kernel times the
    probability that the two pixels take different labels, over the valid pixels. ``logits`` B x K x H x W,
    ``x`` the normalised crops, ``valid`` B x H x W (False on padding)."""
    from napari_pcam.core.crf_loss import image_from_tensor

    b, k_classes, h_in, w_in = logits.shape
    h, w = h_in // down, w_in // down
    p = F.adaptive_avg_pool2d(logits.float().softmax(1), (h, w))
    img = F.adaptive_avg_pool2d(image_from_tensor(x), (h, w))  # the harness's images are all RGB
    if stretch:
        flat = img.flatten(1)
        lo = torch.quantile(flat, 0.005, dim=1).view(b, 1, 1, 1)
        hi = torch.quantile(flat, 0.995, dim=1).view(b, 1, 1, 1)
        img = ((img - lo) / (hi - lo).clamp(min=1e-3)).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=p.dtype), torch.arange(w, dtype=p.dtype), indexing="ij")
    pos = torch.stack([yy, xx])[None].expand(b, -1, -1, -1) / sigma_xy
    feat = torch.cat([pos, img / sigma_rgb], 1)
    k = 2 * radius + 1

    def unfold(t):
        return F.unfold(t, k, padding=radius).view(b, t.shape[1], k * k, h * w)

    d2 = ((unfold(feat) - feat.view(b, -1, 1, h * w)) ** 2).sum(1)
    m = torch.ones(b, 1, h, w) if valid is None else F.adaptive_max_pool2d(valid[:, None].float(), (h, w))
    kern = torch.exp(-0.5 * d2) * unfold(m)[:, 0] * m.view(b, 1, h * w)
    kern[:, (k * k) // 2] = 0
    same = (unfold(p) * p.view(b, k_classes, 1, h * w)).sum(1)
    return (kern * (1 - same)).sum() / m.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------- training
def resize_image(img: np.ndarray, s: float) -> np.ndarray:
    if s == 1.0:
        return img
    h, w = img.shape[:2]
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False, antialias=s < 1)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def resize_labels(y: torch.Tensor, size, s: float) -> torch.Tensor:
    """Nearest-neighbour resize that keeps every sparse label when shrinking."""
    out = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if s < 1:
        ys, xs = torch.nonzero(y != IGNORE, as_tuple=True)
        if len(ys) < 0.05 * y.numel():
            out[(ys * s).long().clamp(max=size[0] - 1), (xs * s).long().clamp(max=size[1] - 1)] = y[ys, xs]
    return out


def swap_head_norm(model, kind: str) -> None:
    """BatchNorm in ASPP and the decoder -> GroupNorm ('gn': min(32, C // 4) groups), LayerNorm-like ('ln': one
    group) or nothing ('none')."""
    from torch import nn

    def swap(mod):
        for name, child in mod.named_children():
            if isinstance(child, nn.BatchNorm2d):
                c = child.num_features
                new = nn.Identity() if kind == "none" else nn.GroupNorm(min(32, c // 4) if kind == "gn" else 1, c)
                setattr(mod, name, new)
            else:
                swap(child)

    swap(model.aspp)
    swap(model.decoder)


def train(a) -> None:
    from napari_pcam.core.data.images import image_to_tensor
    from napari_pcam.core.models import deeplab as dl

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    start = time.perf_counter()
    data = load(a.data, a.ds, a.out)
    n_classes, tr = data["num_classes"], data["train"]
    if a.labels == "masks":
        labels = [m.copy() for m in tr["masks"]]
    elif a.labels == "clicks":
        labels = [sparse_labels(m.shape, pts, a.radius) for m, pts in zip(tr["masks"], tr["points"])]
    else:
        import tifffile

        labels = [tifffile.imread(Path(a.labels) / f"{n}.tif") for n in tr["names"]]
        labels = [np.where(np.isin(lab, a.ignore_classes), IGNORE, lab).astype(np.uint8) for lab in labels]

    def prepare(im):
        return resize_image(stretch_image(im) if a.norm == "stretch" else im, a.scale)

    xs = [image_to_tensor(prepare(im)) for im in tr["images"]]
    ys = [torch.from_numpy(resize_labels(torch.from_numpy(lab.astype(np.int64)), (
        round(lab.shape[0] * a.scale), round(lab.shape[1] * a.scale)), a.scale).numpy()) for lab in labels]
    if a.click_weight > 0:
        clicks = [sparse_labels(m.shape, pts, a.click_radius) for m, pts in zip(tr["masks"], tr["points"])]
        ys = [torch.stack([y, resize_labels(torch.from_numpy(c.astype(np.int64)), y.shape, a.scale)])
              for y, c in zip(ys, clicks)]

    dl.DECODER_CHANNELS, dl.ASPP_CHANNELS = a.dec_ch, a.aspp_ch
    freeze_bn = {"none": None, "true": True, "false": False}[a.freeze_bn]
    model = dl.DeepLabV3Plus(backbone=a.encoder, weights="imagenet", num_classes=n_classes, freeze_bn=freeze_bn)
    if a.head_norm != "bn":
        swap_head_norm(model, a.head_norm)
    if a.freeze_encoder:
        for q in model.encoder.parameters():
            q.requires_grad_(False)
    groups = [g for g in ({"params": model.encoder_parameters(), "lr": a.lr},
                          {"params": model.head_parameters(), "lr": a.lr * a.head_mult}) if g["params"]]
    if a.opt == "sgd":
        opt = torch.optim.SGD(groups, lr=a.lr, momentum=0.9, nesterov=True, weight_decay=a.wd)
    else:
        opt = torch.optim.AdamW(groups, lr=a.lr, weight_decay=a.wd)
    base = [g["lr"] for g in opt.param_groups]

    def crop(i):
        x, y = xs[i], ys[i]
        s = float(np.exp(rng.uniform(np.log(a.jitter[0]), np.log(a.jitter[1]))))
        h, w = y.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        yy = resize_labels(y, size, s) if y.ndim == 2 else torch.stack([resize_labels(t, size, s) for t in y])
        c = a.crop
        ph, pw = max(0, c - size[0]), max(0, c - size[1])
        v = torch.ones(size, dtype=torch.bool)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
            yy = F.pad(yy, (0, pw, 0, ph), value=IGNORE)
            v = F.pad(v, (0, pw, 0, ph), value=False)
        if a.labels == "clicks":  # crops around a click, so that sparse batches hold labels
            cy, cx = torch.nonzero(yy != IGNORE, as_tuple=True)
            j = int(rng.integers(len(cy)))
            y0 = int(np.clip(cy[j] - rng.integers(c), 0, yy.shape[0] - c))
            x0 = int(np.clip(cx[j] - rng.integers(c), 0, yy.shape[1] - c))
        else:
            y0, x0 = int(rng.integers(0, yy.shape[-2] - c + 1)), int(rng.integers(0, yy.shape[-1] - c + 1))
        x, yy, v = x[:, y0:y0 + c, x0:x0 + c], yy[..., y0:y0 + c, x0:x0 + c], v[y0:y0 + c, x0:x0 + c]
        if rng.random() < 0.5:
            x, yy, v = x.flip(-1), yy.flip(-1), v.flip(-1)
        return x, yy, v

    weight = None
    if a.balance:
        cnt = np.bincount(np.concatenate([p[:, 2] for p in tr["points"]]), minlength=n_classes).astype(float)
        weight = torch.tensor(np.where(cnt > 0, cnt.sum() / np.maximum(cnt, 1) / (cnt > 0).sum(), 0),
                              dtype=torch.float32)

    def ce(o, t, w=None):
        if w is not None:
            return F.cross_entropy(o, t, weight=w, ignore_index=IGNORE)
        return F.cross_entropy(o, t, ignore_index=IGNORE, reduction="sum") / (t != IGNORE).sum().clamp(min=1)

    model.train()
    losses, crf_losses, clicked = [], [0.0], []
    for step in range(a.steps):
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * (1 - step / a.steps) ** 0.9
        xb, yb, vb = (torch.stack(t) for t in zip(*[crop(i) for i in rng.integers(0, len(xs), a.batch)]))
        out = model(xb)
        if yb.ndim == 4 and a.click_norm == "mean":  # a batch with one click weighs less than one with many
            clicked.append(int((yb[:, 1] != IGNORE).sum()))
            click = F.cross_entropy(out, yb[:, 1], weight=weight, ignore_index=IGNORE,
                                    reduction="sum") / max(np.mean(clicked), 1.0)
            loss = ce(out, yb[:, 0]) + a.click_weight * click
        elif yb.ndim == 4:
            loss = ce(out, yb[:, 0]) + a.click_weight * ce(out, yb[:, 1], weight)
        else:
            loss = ce(out, yb, weight if a.labels == "clicks" else None)
        if a.crf_loss > 0:
            closs = gated_crf_loss(out, xb, vb, down=a.crf_down, sigma_rgb=a.crf_rgb, sigma_xy=a.crf_xy,
                                   stretch=a.crf_stretch)
            loss = loss + a.crf_loss * closs
            crf_losses.append(closs.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            print(step, np.mean(losses[-50:]), np.mean(crf_losses[-50:]), round(time.perf_counter() - start, 1),
                  flush=True)
    train_s = round(time.perf_counter() - start, 1)
    model.eval()
    (a.out / "models").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), a.out / "models" / f"{a.ds}_{a.tag}.pt")

    @torch.no_grad()
    def predict(img, tile):
        x = image_to_tensor(prepare(img))[None]
        h, w = x.shape[-2:]
        if max(h, w) <= tile:
            logits = model(F.pad(x, (0, (-w) % 16, 0, (-h) % 16)))[..., :h, :w]
        else:
            logits, cnt = torch.zeros(1, n_classes, h, w), torch.zeros(1, 1, h, w)
            stride = tile - tile // 8
            for y0 in list(range(0, max(h - tile, 0) + 1, stride)) + ([h - tile] if h > tile else []):
                for x0 in list(range(0, max(w - tile, 0) + 1, stride)) + ([w - tile] if w > tile else []):
                    t = x[..., y0:y0 + tile, x0:x0 + tile]
                    logits[..., y0:y0 + t.shape[-2], x0:x0 + t.shape[-1]] += model(t).softmax(1)
                    cnt[..., y0:y0 + t.shape[-2], x0:x0 + t.shape[-1]] += 1
            logits = logits / cnt
        if a.scale != 1.0:
            logits = F.interpolate(logits, size=img.shape[:2], mode="bilinear", align_corners=False)
        return logits.argmax(1)[0].byte().numpy()

    res = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}, "train_s": train_s}
    val = data["val"]
    for tile in a.tiles:
        preds = [predict(im, tile) for im in val["images"]]
        key = "val" if tile == a.tiles[0] else f"val_t{tile}"
        res[key], res[key + "_pc"] = miou(val["masks"], preds, n_classes)
        res[key + "_groups"] = groups_report(a.ds, val, preds, n_classes)
    if a.eval_train:
        res["train"], res["train_pc"] = miou(tr["masks"], [predict(im, a.tiles[0]) for im in tr["images"]],
                                             n_classes)
    res["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(res))
    with open(a.out / "results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")


def crf(a) -> None:
    """The dense CRF on a saved GroupNorm model's probabilities (320 px tiles), with and without stretching the
    image the CRF reads."""
    from napari_pcam.core.crf import crf_probabilities
    from napari_pcam.core.data.images import to_rgb8
    from napari_pcam.core.models.deeplab import DeepLabV3Plus
    from napari_pcam.core.stages.segmentation_inference import predict_probabilities

    torch.set_num_threads(a.threads)
    data = load(a.data, a.ds, a.out)
    n_classes, val = data["num_classes"], data["val"]
    model = DeepLabV3Plus(backbone="efficientnet_lite0", weights="none", num_classes=n_classes, head_norm="group")
    model.load_state_dict(torch.load(a.out / "models" / f"{a.ds}_{a.tag}.pt"), strict=False)
    for m in model.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.num_groups = min(32, m.num_channels // 4)  # the harness's grouping (swap_head_norm)
    model.eval()
    plain, crfd, crfs = [], [], []
    for im in val["images"]:
        p = predict_probabilities(model, im, tile_size=320, tile_overlap=80, batch=4)
        p = p.numpy() if hasattr(p, "numpy") else p
        plain.append(p.argmax(0).astype(np.uint8))
        crfd.append(crf_probabilities(to_rgb8(im), p, "crf"))
        crfs.append(crf_probabilities(to_rgb8(stretch_image(im)), p, "crf"))
    res = {"tag": a.tag}
    for name, preds in (("plain", plain), ("crf", crfd), ("crf_stretch", crfs)):
        res[name] = miou(val["masks"], preds, n_classes)
        res["groups_" + name] = groups_report(a.ds, val, preds, n_classes)
    print(json.dumps(res))
    with open(a.out / "results_crf.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one DeepLabv3+ and score it on the held-out images")
    c = sub.add_parser("crf", help="the dense CRF on a saved model's held-out probabilities")
    for q in (t, c):
        q.add_argument("ds", help="data set folder under --data (dsb2018, dubai)")
        q.add_argument("--data", type=Path, default=Path("../shared/data"))
        q.add_argument("--out", type=Path, default=Path("deeplab_experiments"))
        q.add_argument("--threads", type=int, default=2)
    c.add_argument("tag", help="the --tag of the trained model")
    t.add_argument("--labels", default="masks", help="masks | clicks | a folder of <image>.tif pseudo labels")
    t.add_argument("--ignore-classes", type=int, nargs="*", default=[],
                   help="pseudo labels of these classes are ignored (e.g. 1: only the mined background)")
    t.add_argument("--encoder", default="efficientnet_lite0")
    t.add_argument("--freeze-encoder", action="store_true")
    t.add_argument("--freeze-bn", default="none", choices=("none", "true", "false"))
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--batch", type=int, default=6)
    t.add_argument("--crop", type=int, default=160)
    t.add_argument("--lr", type=float, default=0.007)
    t.add_argument("--head-mult", type=float, default=1.0)
    t.add_argument("--wd", type=float, default=4e-5)
    t.add_argument("--scale", type=float, default=1.0, help="resample every image by this factor")
    t.add_argument("--jitter", type=float, nargs=2, default=(0.5, 2.0))
    t.add_argument("--opt", default="sgd", choices=("sgd", "adamw"))
    t.add_argument("--radius", type=int, default=0, help="click squares' half side when --labels clicks")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-train", action="store_true")
    t.add_argument("--tag", default="run")
    t.add_argument("--tiles", type=int, nargs="+", default=[1024])
    t.add_argument("--crf-loss", type=float, default=0.0)
    t.add_argument("--crf-down", type=int, default=2)
    t.add_argument("--crf-rgb", type=float, default=0.1)
    t.add_argument("--crf-xy", type=float, default=6.0)
    t.add_argument("--crf-stretch", action="store_true", help="the CRF loss's colours: each crop stretched")
    t.add_argument("--head-norm", default="bn", choices=("bn", "gn", "ln", "none"))
    t.add_argument("--norm", default="none", choices=("none", "stretch"), help="stretch each input image")
    t.add_argument("--click-weight", type=float, default=0.0, help="the clicks' own cross-entropy, weighted")
    t.add_argument("--click-radius", type=int, default=2)
    t.add_argument("--click-norm", default="batch", choices=("batch", "mean"),
                   help="the clicks' cross-entropy over this batch's clicked pixels, or over their mean count so far")
    t.add_argument("--balance", action="store_true", help="class-balanced weights on the clicks")
    t.add_argument("--dec-ch", type=int, default=256)
    t.add_argument("--aspp-ch", type=int, default=256)
    a = p.parse_args()
    train(a) if a.command == "train" else crf(a)


if __name__ == "__main__":
    main()
