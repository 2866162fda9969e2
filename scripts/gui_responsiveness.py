"""GUI responsiveness while the chain trains on the CPU, on the built-in sample; prints JSON.

Measures (1) the largest gap between ticks of a 10 ms QTimer from pressing Train until the training
worker has finished and its result layers are shown (the viewer is responsive when this stays well under
100 ms), also before the worker starts (while the empty result layers are made) and while it runs, and
(2) the time from pressing Train to the first PCAM heatmap layer. Gaps also grow when other processes take
the CPU: the load average before Train (1 minute) and the GUI thread's own CPU time in the largest gaps tell
the two apart; garbage collections (any thread, GIL held) inside the largest gaps are reported too. Run
under a display or Xvfb: ``xvfb-run -a python scripts/gui_responsiveness.py`` (defaults: the whole chain
with light epochs).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from _sample_session import open_sample_session, wait_for  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10, help="PCAM epochs (the sample preset uses 60)")
    parser.add_argument("--irn-epochs", type=int, default=3, help="IRNet epochs (the sample preset uses 30)")
    parser.add_argument("--deeplab-epochs", type=int, default=5, help="DeepLabv3+ epochs (the sample preset uses 100)")
    parser.add_argument("--until", default="final", help="last stage (pcam, cams, irn, refined, deeplab, final)")
    args = parser.parse_args()
    viewer, train = open_sample_session(args.epochs, until=args.until, irn_epochs=args.irn_epochs,
                                        deeplab_epochs=args.deeplab_epochs)
    for _ in range(50):  # let the viewer finish drawing before the clock starts
        QApplication.processEvents()
        time.sleep(0.01)
    ticks: list[float] = []
    cpu: list[float] = []  # the GUI thread's CPU time at each tick (how much of a gap was its own work)
    first_layer: list[float] = []
    inserted: list[tuple[str, float]] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: (ticks.append(time.perf_counter()), cpu.append(time.thread_time())))

    def on_inserted(event) -> None:
        if "pcam_result" in event.value.metadata:
            inserted.append((event.value.name, time.perf_counter()))
            if not first_layer and "|pcam " in event.value.metadata["pcam_result"]:
                first_layer.append(time.perf_counter())

    viewer.layers.events.inserted.connect(on_inserted)
    collections: list[tuple[float, int, float]] = []  # (start, generation, seconds) of each garbage collection
    gc_start: list[float] = [0.0]

    def on_gc(phase: str, info: dict) -> None:  # any thread; the collector holds the GIL throughout
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            collections.append((gc_start[0], info["generation"], time.perf_counter() - gc_start[0]))

    gc.callbacks.append(on_gc)
    stages: list[tuple[str, float]] = []  # when the worker's reports moved to each stage
    load = os.getloadavg()[0]
    timer.start()
    start = time.perf_counter()
    train.train_button.click()
    first_cams: list[float] = []
    worker_span: list[float] = []
    train.worker.started.connect(lambda: worker_span.append(time.perf_counter()))
    train.worker.finished.connect(lambda: worker_span.append(time.perf_counter()))
    train.worker.yielded.connect(
        lambda p: first_cams.append(time.perf_counter()) if p.stage == "cams" and not first_cams else None)
    train.worker.yielded.connect(
        lambda p: stages.append((p.stage, time.perf_counter())) if not stages or stages[-1][0] != p.stage else None)
    wait_for(train)
    end = time.perf_counter()
    timer.stop()
    gc.callbacks.remove(on_gc)

    def gc_ms(lo: float, hi: float) -> float:
        """Milliseconds of garbage collection (any thread, GIL held) inside (lo, hi)."""
        return 1000 * sum(max(0.0, min(t + d, hi) - max(t, lo)) for t, _, d in collections)
    keep = [i for i, t in enumerate(ticks) if start <= t <= end]
    inside = np.array([ticks[i] for i in keep])
    gaps = np.diff(inside) * 1000
    gui_cpu = np.diff(np.array([cpu[i] for i in keep])) * 1000
    before = np.array([t for t in ticks if start <= t <= worker_span[0]])
    worst = np.argsort(gaps)[::-1][:5]
    during = np.array([t for t in ticks if worker_span[0] <= t <= worker_span[-1]])
    worker_gaps = np.diff(during) * 1000
    result = {
        "status": train.status.text(),
        "until": args.until,
        "epochs": {"pcam": args.epochs, "irn": args.irn_epochs, "deeplab": args.deeplab_epochs},
        "torch_threads_in_worker": max(1, (os.cpu_count() or 2) - 1),
        "cpu_count": os.cpu_count(),
        "training_seconds": round(end - start, 2),
        "timer_ticks": int(len(gaps) + 1),
        "load_average_1min_before": round(load, 2),
        "max_tick_gap_ms": round(float(gaps.max()), 1),
        "p99_tick_gap_ms": round(float(np.percentile(gaps, 99)), 1),
        "median_tick_gap_ms": round(float(np.median(gaps)), 1),
        "worker_started_at_s": round(worker_span[0] - start, 2),
        "max_tick_gap_before_worker_ms": round(float(np.diff(before).max() * 1000), 1) if len(before) > 1 else None,
        "max_tick_gap_while_worker_runs_ms": round(float(worker_gaps.max()), 1),
        "p99_tick_gap_while_worker_runs_ms": round(float(np.percentile(worker_gaps, 99)), 1),
        "largest_gaps_ms_at_s": [[round(float(gaps[i]), 1), round(float(inside[i] - start), 2)] for i in worst],
        "gui_thread_cpu_ms_in_largest_gaps": [round(float(gui_cpu[i]), 1) for i in worst],
        "gc_ms_in_largest_gaps": [round(gc_ms(inside[i], inside[i + 1]), 1) for i in worst],
        "max_gui_thread_cpu_in_a_gap_ms": round(float(gui_cpu.max()), 1),
        "garbage_collections_over_5_ms": [[round(t - start, 2), g, round(d * 1000, 1)] for t, g, d in collections
                                          if d >= 0.005 and start <= t <= end],
        "stages_reported_at_s": [[name, round(t - start, 2)] for name, t in stages],
        "train_to_first_pcam_layer_s": round(first_layer[0] - start, 2) if first_layer else None,
        "train_to_first_heatmap_values_s": round(first_cams[0] - start, 2) if first_cams else None,
        "result_layers_added_at_s": [[name, round(t - start, 2)] for name, t in inserted],
    }
    print(json.dumps(result, indent=2))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
