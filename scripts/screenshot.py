"""Screenshot of napari after training on the built-in sample -> docs/screenshot.png.

Trains the whole chain (PCAM heatmaps, refined and final labels) with light epochs. Run under a display
or Xvfb, e.g. ``xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshot.py`` (two to three
minutes on two CPU cores with the defaults).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# No notification toasts over the picture (e.g. napari's PyQt5 deprecation): napari's settings read
# NAPARI_<SECTION>_<FIELD> from the environment, which overrides the saved setting without writing it.
os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "none")
sys.path.insert(0, str(Path(__file__).parent))

from _sample_session import open_sample_session, wait_for  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20, help="PCAM epochs (the sample preset uses 60)")
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "docs" / "screenshot.png"))
    parser.add_argument("--irn-epochs", type=int, default=5, help="IRNet epochs (the sample preset uses 30)")
    parser.add_argument("--deeplab-epochs", type=int, default=10, help="DeepLabv3+ epochs (the sample preset uses 100)")
    parser.add_argument("--slice", type=int, default=3, help="stack slice shown")
    args = parser.parse_args()
    viewer, train = open_sample_session(args.epochs, irn_epochs=args.irn_epochs, deeplab_epochs=args.deeplab_epochs)
    viewer.window.resize(1500, 950)
    train.train()
    wait_for(train)
    for name in ("refined", "final"):  # the heatmaps show; the label layers stay in the list, hidden
        viewer.layers[f"pcam sample {name}"].visible = False
    print(train.status.text())
    viewer.layers["pcam points"].size = 6
    viewer.layers["pcam sample"].opacity = 0.45  # the heatmaps add their class colours on a dimmed image
    viewer.layers.selection.active = viewer.layers["pcam points"]
    viewer.dims.set_current_step(0, args.slice)
    viewer.reset_view()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(args.out, canvas_only=False)
    print(f"saved {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
