"""The dense random walk of IRNet (Ahn et al., CVPR 2019) as a reference, and a benchmark of napari-pcam's
stencil random walk against it.

:func:`dense_random_walk` follows IRNet's ``propagate_to_edge``: it builds the N x N affinity matrix (pairs
within the radius, symmetric, self-loops of 1), raises it to ``beta``, normalises the columns, squares the
transition matrix ``exp_times`` times and multiplies. It needs O(N^2) memory and O(exp_times N^3) time;
it is only meant as a test oracle and for the benchmark.

Peak memory is measured per method in a fresh subprocess: after imports and input creation the process
resets its peak resident set size (``/proc/self/clear_refs``, Linux) and reads its current RSS; after the
run it reads the peak (``VmHWM``). ``peak_mb`` is the difference, i.e. the extra memory the method needed
at its worst moment (torch's CPU allocations included, unlike tracemalloc). Without ``/proc`` the
process-lifetime ``ru_maxrss`` minus the RSS before the run is used (an upper bound).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..core.stages.pairs import path_offsets, search_directions


def dense_affinity_matrix(boundary: torch.Tensor, *, beta: float, radius: int) -> torch.Tensor:
    """IRNet's dense ``aff ** beta`` matrix: float (N, N), N = h * w, row-major pixel order."""
    h, w = boundary.shape
    n = h * w
    flat = boundary.reshape(-1)
    ys, xs = np.divmod(np.arange(n), w)
    a = torch.zeros((n, n), dtype=boundary.dtype, device=boundary.device)
    for dy, dx in search_directions(radius):
        ok = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        src = np.flatnonzero(ok)
        path = np.stack([src + oy * w + ox for oy, ox in path_offsets(int(dy), int(dx))])  # L x P
        aff = 1.0 - flat[torch.as_tensor(path, device=boundary.device)].amax(0)
        dst = torch.as_tensor(src + dy * w + dx, device=boundary.device)
        src = torch.as_tensor(src, device=boundary.device)
        a[src, dst] = aff
        a[dst, src] = aff
    a.fill_diagonal_(1.0)
    return a.clamp(0.0, 1.0) ** beta


def dense_transition_matrix(boundary: torch.Tensor, *, beta: float, radius: int) -> torch.Tensor:
    """Column-normalised transition matrix: float (N, N), every column sums to 1."""
    a = dense_affinity_matrix(boundary, beta=beta, radius=radius)
    return a / a.sum(0, keepdim=True)


def dense_random_walk(
    cams: torch.Tensor, boundary: torch.Tensor, *, beta: float = 12.0, exp_times: int = 8, radius: int = 5
) -> torch.Tensor:
    """IRNet's formulation: float (K, h, w) cams, (h, w) boundary -> float (K, h, w)."""
    k, h, w = cams.shape
    trans = dense_transition_matrix(boundary.to(cams.dtype), beta=beta, radius=radius)
    for _ in range(exp_times):
        trans = trans @ trans
    x = (cams * (1.0 - boundary.to(cams.dtype))).reshape(k, h * w)
    return (x @ trans).reshape(k, h, w)


def make_inputs(height: int, width: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A VOC-like stride-4 problem: float32 (classes - 1, h, w) blob CAMs and an (h, w) boundary map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    cams = np.zeros((classes - 1, height, width), np.float32)
    owner = np.zeros((height, width), np.int64)
    for c in range(classes - 1):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(1.5, max(2.0, height / 4)), rng.uniform(1.5, max(2.0, width / 4))
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        cams[c] = np.exp(-d) * rng.uniform(0.3, 1.0)
        owner[d < 1] = c + 1
    edge = (np.abs(np.diff(owner, axis=0, prepend=owner[:1]))
            + np.abs(np.diff(owner, axis=1, prepend=owner[:, :1]))) > 0
    boundary = np.clip(0.9 * edge + rng.uniform(0, 0.1, edge.shape), 0, 1).astype(np.float32)
    return torch.from_numpy(cams), torch.from_numpy(boundary)


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise OSError(field)


def _worker(args: argparse.Namespace) -> None:
    """Run one method in this (fresh) process and write its output and measurements."""
    from ..core.stages.random_walk import random_walk

    if args.threads:
        torch.set_num_threads(args.threads)
    cams, boundary = make_inputs(args.height, args.width, args.classes, args.seed)
    fn = random_walk if args.worker == "ours" else dense_random_walk
    fn(cams[:1, :8, :8].contiguous(), boundary[:8, :8].contiguous(), beta=args.beta, exp_times=1)  # warm-up
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before, peak_field = _rss_mb("VmRSS"), "VmHWM"
    except OSError:
        before, peak_field = _rss_mb("VmRSS") if Path("/proc/self/status").exists() else 0.0, None
    start = time.perf_counter()
    out = fn(cams, boundary, beta=args.beta, exp_times=args.exp_times)
    seconds = time.perf_counter() - start
    if peak_field:
        peak = _rss_mb(peak_field)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    np.save(args.out, out.numpy())
    print(json.dumps({"seconds": seconds, "peak_mb": peak - before}))


def _run_worker(method: str, out: Path, **kw) -> dict:
    cmd = [sys.executable, "-m", "napari_pcam.benchmarks.random_walk", "--worker", method, "--out", str(out)]
    for key, value in kw.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {method!r} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def benchmark_random_walk(
    height: int = 94,
    width: int = 125,
    classes: int = 21,
    beta: float = 12.0,
    exp_times: int = 8,
    seed: int = 0,
    threads: int = 0,
) -> dict:
    """Time, peak memory and output difference of the stencil vs. the dense random walk (float32, CPU).

    Args:
        height, width: Stride-4 grid (94 x 125 = a 375 x 500 VOC image).
        classes: Classes including background (the walk propagates ``classes - 1`` maps).
        beta, exp_times: Random-walk parameters; radius 5.
        seed: Seed of the synthetic inputs.
        threads: torch CPU threads in both workers (0 = torch's default).

    Returns:
        JSON-able dict: ``speedup``, ``max_abs_diff`` (raw propagated scores), ``max_abs_diff_normalised``
        (after the global max normalisation), ``label_agreement`` and ``same_labels`` (final argmax labels
        at image resolution with the 0.3 background plane), ``peak_mb_ours``, ``peak_mb_dense``,
        ``seconds_ours``, ``seconds_dense``, the problem size and how memory was measured.
    """
    from ..core.stages.random_walk import scores_to_labels

    kw = dict(height=height, width=width, classes=classes, beta=beta, exp_times=exp_times, seed=seed, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        ours = _run_worker("ours", Path(tmp) / "ours.npy", **kw)
        dense = _run_worker("dense", Path(tmp) / "dense.npy", **kw)
        a, b = np.load(Path(tmp) / "ours.npy"), np.load(Path(tmp) / "dense.npy")
    keys = np.arange(1, classes)
    shape = (4 * height, 4 * width)
    la = scores_to_labels(torch.from_numpy(a), keys, shape, 0.3)
    lb = scores_to_labels(torch.from_numpy(b), keys, shape, 0.3)
    return {
        "speedup": dense["seconds"] / ours["seconds"],
        "max_abs_diff": float(np.abs(a - b).max()),
        "max_abs_diff_normalised": float(np.abs(a / a.max() - b / b.max()).max()),
        "label_agreement": float(np.mean(la == lb)),
        "same_labels": bool(np.array_equal(la, lb)),
        "peak_mb_ours": ours["peak_mb"],
        "peak_mb_dense": dense["peak_mb"],
        "seconds_ours": ours["seconds"],
        "seconds_dense": dense["seconds"],
        "grid": [height, width],
        "pixels": height * width,
        "propagated_maps": classes - 1,
        "beta": beta,
        "steps": 2**exp_times,
        "radius": 5,
        "threads": threads or torch.get_num_threads(),
        "device": "cpu",
        "memory_measurement": "peak RSS above the pre-run RSS, one fresh subprocess per method (VmHWM after "
        "/proc/self/clear_refs)",
    }


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="internal worker of the random-walk benchmark")
    parser.add_argument("--worker", choices=("ours", "dense"), required=True)
    parser.add_argument("--out", required=True)
    for name, typ in (("height", int), ("width", int), ("classes", int), ("beta", float), ("exp-times", int),
                      ("seed", int), ("threads", int)):
        parser.add_argument(f"--{name}", type=typ, required=True)
    _worker(parser.parse_args(argv))


if __name__ == "__main__":
    _main()
