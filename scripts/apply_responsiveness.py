"""GUI responsiveness while the Apply widget runs a model bundle on many image layers; prints JSON.

Opens a viewer with ``--images`` RGB image layers (``--size`` px, seeded noise), writes an untrained model
bundle (DeepLabv3+ ResNet-18 with a PCAM, as a training run would), docks the Apply widget with "every image
layer", presses Apply and measures the largest gap between ticks of a 10 ms QTimer until the worker has
finished and every label layer is shown (the viewer is responsive when it stays well under 100 ms), and the
same probe for a few seconds before, with nothing running (what other processes' load costs). Run
under a display or Xvfb: ``xvfb-run -a python scripts/apply_responsiveness.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

# torch before napari's OpenGL context (see _sample_session.py)
import napari_pcam.core.pipeline  # noqa: F401,E402

# isort: split
import napari  # noqa: E402
import numpy as np  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402


def write_bundle(path: Path, class_names=("background", "cell", "fiber", "crystal")) -> Path:
    """An untrained bundle: the networks' cost is a trained one's (same architecture and sizes)."""
    from napari_pcam.core.bundle import save_bundle
    from napari_pcam.core.config import CamConfig, DeepLabConfig, PipelineConfig
    from napari_pcam.core.models.cam import CamNet
    from napari_pcam.core.stages.cam import TrainedCam
    from napari_pcam.core.stages.segmentation import TrainedSegmenter, build_deeplab

    dl = DeepLabConfig(backbone="resnet18", weights="none")
    seg = TrainedSegmenter(build_deeplab(dl, num_classes=len(class_names), in_channels=3).eval(), dl,
                           tuple(class_names), 3)
    cam = CamNet(backbone="resnet18", weights="none", in_channels=3, num_classes=len(class_names) - 1).eval()
    save_bundle(path, segmenter=seg, pcam=TrainedCam(cam, CamConfig(backbone="resnet18", weights="none"),
                                                     tuple(class_names)), irn_path=None, config=PipelineConfig())
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20, help="image layers")
    parser.add_argument("--size", type=int, default=256, help="side of each image in pixels")
    parser.add_argument("--layers", action="store_true", help="also add a label layer per image layer")
    parser.add_argument("--hidden", action="store_true", help="hide the image layers (nothing to repaint)")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="probe this long before Apply, idle")
    parser.add_argument("--out", default=None, help="label folder (default: a temporary one)")
    args = parser.parse_args()
    from napari_pcam.gui.apply import MODES, ApplyWidget

    viewer = napari.Viewer(show=True)
    rng = np.random.default_rng(0)
    for i in range(args.images):
        viewer.add_image(rng.integers(0, 255, (args.size, args.size, 3), np.uint8), rgb=True, name=f"img{i:02d}",
                         visible=not args.hidden)
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    with tempfile.TemporaryDirectory() as tmp:
        widget.load(write_bundle(Path(tmp) / "model"))
        widget.mode.value = MODES[1]
        widget.add_layers.value = args.layers
        widget.out.value = args.out or str(Path(tmp) / "labels")
        widget.overwrite.value = True
        for _ in range(50):  # let the viewer finish drawing before the clock starts
            QApplication.processEvents()
            time.sleep(0.01)
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        load = os.getloadavg()[0]
        timer.start()
        idle_start = time.perf_counter()  # the same probe with nothing running: what the machine's load costs
        while time.perf_counter() - idle_start < args.idle_seconds:
            QApplication.processEvents()
            time.sleep(0.002)
        idle = np.diff(np.array([t for t in ticks if t >= idle_start])) * 1000
        start = time.perf_counter()
        widget.apply_button.click()
        while widget.busy:
            QApplication.processEvents()
            time.sleep(0.002)
        end = time.perf_counter()
        timer.stop()
    inside = np.array([t for t in ticks if start <= t <= end])
    gaps = np.diff(inside) * 1000
    worst = np.argsort(gaps)[::-1][:5]
    result = {
        "status": widget.status.text(),
        "images": args.images,
        "size": args.size,
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": round(load, 2),
        "seconds": round(end - start, 2),
        "result_layers": sum("pcam_result" in layer.metadata for layer in viewer.layers),
        "timer_ticks": int(len(inside)),
        "idle_max_tick_gap_ms": round(float(idle.max()), 1) if len(idle) else None,
        "idle_median_tick_gap_ms": round(float(np.median(idle)), 1) if len(idle) else None,
        "max_tick_gap_ms": round(float(gaps.max()), 1),
        "p99_tick_gap_ms": round(float(np.percentile(gaps, 99)), 1),
        "median_tick_gap_ms": round(float(np.median(gaps)), 1),
        "largest_gaps_ms_at_s": [[round(float(gaps[i]), 1), round(float(inside[i] - start), 2)] for i in worst],
    }
    print(json.dumps(result, indent=2))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
