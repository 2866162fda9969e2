"""Several processes: helpers in one process, and two real gloo processes started like torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_pcam.core import distributed
from napari_pcam.core.errors import ConfigError
from napari_pcam.core.metrics import evaluate
from napari_pcam.core.training import RankBatchSampler


def test_single_process_helpers_are_identities():
    assert distributed.info() == distributed.DistInfo(0, 1, 0) and distributed.is_main()
    assert distributed.shard(3) == [0, 1, 2] and distributed.rank_slice([5, 6]) == [5, 6]
    assert distributed.all_gather("x") == ["x"] and distributed.broadcast(3) == 3
    assert distributed.global_batch(1, minimum_per_rank=2) == 2 and distributed.global_batch(5) == 5
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
    distributed.barrier()


def test_single_process_evaluate_equals_metrics():
    rng = np.random.default_rng(1)
    gts = [rng.integers(0, 3, (9, 7)).astype(np.uint8) for _ in range(3)]
    preds = [rng.integers(0, 3, (9, 7)).astype(np.uint8) for _ in range(3)]
    assert distributed.evaluate(gts, preds, ["a", "b", "c"]) == evaluate(gts, preds, ["a", "b", "c"])


def test_init_without_torchrun_does_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env("auto") == distributed.DistInfo()


def test_named_device_with_several_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="under torchrun use --device auto or cuda"):
        distributed.init_from_env("cuda:1")


def test_rank_batch_sampler_single_process_gives_shuffled_full_batches():
    sampler = RankBatchSampler(10, 3, torch.Generator().manual_seed(4))
    first, second = list(sampler), list(sampler)
    assert len(sampler) == 3 and all(len(b) == 3 for b in first + second)
    assert len(set(sum(first, []))) == 9 and first != second  # no repeats in an epoch; a new order each epoch
    assert first == list(RankBatchSampler(10, 3, torch.Generator().manual_seed(4)))  # seeded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cmd: list[str], cwd: Path, n: int = 2, timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """Start ``n`` ranks of ``cmd`` with the environment torchrun gives them (gloo over localhost)."""
    port = _free_port()
    procs = []
    for rank in range(n):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n),
               "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    out = []
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(cmd, p.returncode, stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    done = _launch([sys.executable, str(Path(__file__).with_name("ddp_worker.py")), str(out)], cwd=out)
    for r, p in enumerate(done):
        assert p.returncode == 0, f"rank {r} failed:\n{p.stdout[-4000:]}"
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_ranks_share_out_images_and_gather(two_ranks):
    _, (r0, r1) = two_ranks
    assert (r0["world"], r1["world"]) == (2, 2)
    assert r0["shard"] == [0, 2, 4] and r1["shard"] == [1, 3]
    assert r0["gathered"] == r1["gathered"] == [0, 10]
    assert r0["broadcast"] == r1["broadcast"] == "from 0"
    # each rank gets half of every global batch, and together they are one process's batches
    single = list(RankBatchSampler(8, 4, torch.Generator().manual_seed(0)))
    assert [sorted(a + b) for a, b in zip(r0["batches"], r1["batches"])] == [sorted(b) for b in single]
    assert all(len(b) == 2 for b in r0["batches"] + r1["batches"])


@pytest.mark.slow
def test_sharded_evaluation_equals_one_process(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["miou"] == r1["miou"] == pytest.approx(r0["miou_single"])


@pytest.mark.slow
def test_ddp_training_keeps_ranks_identical(two_ranks):
    """The ranks train on different halves of each batch; DDP averages gradients, so weights stay equal."""
    _, (r0, r1) = two_ranks
    assert r0["cam_params"] == pytest.approx(r1["cam_params"], rel=1e-6)
    assert r0["deeplab_params"] == pytest.approx(r1["deeplab_params"], rel=1e-6)


@pytest.mark.slow
def test_pipeline_under_two_ranks_writes_every_result_once(two_ranks):
    out, (r0, r1) = two_ranks
    run = out / "run"
    for sub, n in (("cams", 4), ("pcam", 4), ("refined", 4), ("final", 4), ("val_final", 3)):
        ext = "npz" if sub == "cams" else "tif"
        assert len(list((run / sub).glob(f"*.{ext}"))) == n, sub
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {k: metrics[k] for k in ("train", "val")} == r0["metrics"] == r1["metrics"]
    assert set(metrics["train"]) == {"pcam", "refined", "final"}
    assert r0["refined"] == r1["refined"] and r0["val_final"] == r1["val_final"]  # everyone read every result
    manifest = json.loads((run / "run.json").read_text())
    assert {"pcam", "cams", "irn", "refined", "deeplab", "final", "val_final", "bundle"} <= set(manifest["stages"])
    assert (run / "model" / "bundle.json").is_file() and (run / "models" / "pcam.pt").is_file()
