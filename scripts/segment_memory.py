"""Peak memory of ``napari-pcam segment`` against the image size; prints JSON.

For every ``--sizes`` S it writes one S x S RGB uint8 TIFF (seeded noise) and an untrained ResNet-18
DeepLabv3+ bundle (the same cost as a trained one), runs ``python -m napari_pcam segment`` on it in a fresh
process and reports that process's peak resident memory (``ru_maxrss`` from ``wait4``) and wall time.
Headless, no napari needed: ``python scripts/segment_memory.py --sizes 2000 10000``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_bundle(path: Path, class_names=("background", "cell", "fiber", "crystal")) -> Path:
    from napari_pcam.core.bundle import save_bundle
    from napari_pcam.core.config import DeepLabConfig, PipelineConfig
    from napari_pcam.core.stages.segmentation import TrainedSegmenter, build_deeplab

    dl = DeepLabConfig(backbone="resnet18", weights="none")
    seg = TrainedSegmenter(build_deeplab(dl, num_classes=len(class_names), in_channels=3).eval(), dl,
                           tuple(class_names), 3)
    save_bundle(path, segmenter=seg, pcam=None, irn_path=None, config=PipelineConfig())
    return path


def write_image(path: Path, size: int) -> None:
    """An S x S x 3 uint8 TIFF, written in row bands (so this process stays small too)."""
    import tifffile

    rng = np.random.default_rng(0)
    rows = max(1, min(size, 2_000_000 // size))
    bands = (rng.integers(0, 255, (min(rows, size - y), size, 3), np.uint8) for y in range(0, size, rows))
    tifffile.imwrite(path, data=bands, shape=(size, size, 3), dtype=np.uint8, photometric="rgb")


def measure(size: int, tmp: Path, model: Path, threads: int) -> dict:
    images = tmp / f"img{size}"
    images.mkdir()
    write_image(images / f"noise{size}.tif", size)
    out = tmp / f"labels{size}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "napari_pcam", "segment", "--model", str(model), "--images", str(images),
           "--out", str(out), "--device", "cpu", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    output = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"segment failed on {size} px:\n{output}")
    return {"size": size, "image_mib": round(size * size * 3 / 2**20, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000], help="image sides in pixels")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of the segment process")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_bundle(Path(tmp) / "model")
        rows = [measure(size, Path(tmp), model, args.threads) for size in args.sizes]
    result = {"cpu_count": os.cpu_count(), "threads": args.threads, "rows": rows}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
