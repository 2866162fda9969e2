"""One rank of the two-process tests in test_distributed.py (started like torchrun: RANK, WORLD_SIZE, ...).

Usage: python ddp_worker.py OUT_DIR. Writes ``OUT_DIR/rank<r>.json`` with what the test compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_pcam.core import distributed
from napari_pcam.core.config import (
    CamConfig,
    CamInferenceConfig,
    DeepLabConfig,
    IrnConfig,
    PipelineConfig,
    RandomWalkConfig,
    RuntimeConfig,
)
from napari_pcam.core.data.synthetic import make_synthetic
from napari_pcam.core.metrics import evaluate as evaluate_single
from napari_pcam.core.pipeline import RunData, run_pipeline
from napari_pcam.core.progress import drain
from napari_pcam.core.stages.cam import train_cam
from napari_pcam.core.training import RankBatchSampler


def main(out: Path) -> None:
    torch.set_num_threads(1)
    d = distributed.init_from_env("cpu")
    report: dict = {"rank": d.rank, "world": d.world_size, "shard": distributed.shard(5)}
    report["gathered"] = distributed.all_gather(d.rank * 10)
    report["broadcast"] = distributed.broadcast(f"from {d.rank}")
    report["batches"] = list(RankBatchSampler(8, 4, torch.Generator().manual_seed(0)))

    train, val = make_synthetic(4, 64, seed=3), make_synthetic(3, 64, seed=12)
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 4, m.shape).astype(np.uint8) for m in val.masks]
    report["miou"] = distributed.evaluate(val.masks, preds, train.points.class_names)["miou"]
    report["miou_single"] = evaluate_single(val.masks, preds, train.points.class_names)["miou"]

    cam = CamConfig(backbone="resnet18", weights="none", crop_size=64, batch_size=4, epochs=2)
    trained = drain(train_cam(train.images, train.points, cam, runtime=RuntimeConfig(device="cpu")))
    flat = torch.cat([p.detach().flatten() for p in trained.model.parameters()])
    report["cam_params"] = [float(flat.sum()), float(flat.abs().sum())]

    config = PipelineConfig(
        cam=cam,
        cam_inference=CamInferenceConfig(scales=(1.0,), flip=False),
        irn=IrnConfig(backbone="resnet18", weights="same", crop_size=64, batch_size=2, epochs=1, radius=5),
        random_walk=RandomWalkConfig(exp_times=3),
        deeplab=DeepLabConfig(backbone="resnet18", weights="none", crop_size=64, batch_size=4, epochs=1),
        runtime=RuntimeConfig(device="cpu"),
    )
    data = RunData(train.images, train.points, train.masks, val.images, val.masks)
    result = drain(run_pipeline(data, config, out / "run", until="final"))
    report["metrics"] = {k: result.metrics[k] for k in ("train", "val")}
    report["refined"] = [int(lab.sum()) for lab in result.refined]
    report["val_final"] = [int(lab.sum()) for lab in result.val_final]
    seg = torch.cat([p.detach().flatten() for p in result.segmenter.model.parameters()])
    report["deeplab_params"] = float(seg.abs().sum())
    (out / f"rank{d.rank}.json").write_text(json.dumps(report))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
