"""The stencil random walk against IRNet's dense formulation, and its labels."""

import numpy as np
import pytest
import torch

from napari_pcam.benchmarks.random_walk import dense_random_walk, dense_transition_matrix
from napari_pcam.core.stages.random_walk import random_walk, scores_to_labels, stencil_weights


def _problem(h, w, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    cams = torch.rand(k, h, w, generator=g, dtype=torch.float64)
    boundary = torch.rand(h, w, generator=g, dtype=torch.float64) ** 3
    return cams, boundary


@pytest.mark.parametrize("beta", [1.0, 4.0, 12.0])
@pytest.mark.parametrize("shape, radius", [((7, 9), 5), ((6, 11), 3)])
def test_equals_dense_oracle(beta, shape, radius):
    cams, boundary = _problem(*shape)
    ours = random_walk(cams, boundary, beta=beta, exp_times=4, radius=radius)
    dense = dense_random_walk(cams, boundary, beta=beta, exp_times=4, radius=radius)
    torch.testing.assert_close(ours, dense, rtol=1e-10, atol=1e-12)


def test_single_step_equals_one_transition():
    cams, boundary = _problem(5, 6, k=2, seed=3)
    ours = random_walk(cams, boundary, beta=2.0, exp_times=0, radius=5)
    trans = dense_transition_matrix(boundary, beta=2.0, radius=5)
    ref = ((cams * (1 - boundary)).reshape(2, -1) @ trans).reshape(2, 5, 6)
    torch.testing.assert_close(ours, ref)


def test_transition_columns_sum_to_one():
    _, boundary = _problem(6, 7)
    trans = dense_transition_matrix(boundary, beta=12.0, radius=5)
    torch.testing.assert_close(trans.sum(0), torch.ones(42, dtype=torch.float64))
    _, weights = stencil_weights(boundary, beta=12.0, radius=5)
    torch.testing.assert_close(weights.sum(0), torch.ones(6, 7, dtype=torch.float64))


def test_boundary_wall_stops_propagation():
    cams = torch.zeros(1, 10, 20)
    cams[0, :, :4] = 1.0
    boundary = torch.zeros(10, 20)
    boundary[:, 10] = 1.0
    out = random_walk(cams, boundary, beta=12.0, exp_times=8, radius=5)
    assert out[0, :, :10].min() > 0.01  # spread over the whole left side
    assert out[0, :, 10:].abs().max() == 0.0  # nothing crosses the wall


def test_grid_smaller_than_radius_matches_oracle():
    cams, boundary = _problem(2, 3)
    ours = random_walk(cams, boundary, beta=12.0, exp_times=3, radius=5)
    torch.testing.assert_close(ours, dense_random_walk(cams, boundary, beta=12.0, exp_times=3, radius=5))


def test_zero_and_empty_cams_give_background_not_nan():
    boundary = torch.rand(4, 5)
    zero = random_walk(torch.zeros(2, 4, 5), boundary)
    labels = scores_to_labels(zero, np.array([1, 2]), (15, 18), 0.3)
    assert labels.shape == (15, 18) and labels.max() == 0
    empty = random_walk(torch.zeros(0, 4, 5), boundary)
    assert scores_to_labels(empty, np.zeros(0, np.int64), (15, 18), 0.3).max() == 0


def test_labels_single_class_and_keys():
    rw = torch.zeros(1, 3, 3)
    rw[0, 0, 0] = 2.0
    rw[0, 2, 2] = 0.2  # 0.1 after max normalisation: below the background plane
    labels = scores_to_labels(rw, np.array([3]), (12, 12), 0.3)
    assert labels.dtype == np.uint8
    assert labels[0, 0] == 3 and labels[11, 11] == 0


def test_shape_mismatch_is_an_error():
    from napari_pcam.core.errors import DataError

    with pytest.raises(DataError, match="K x h x w"):
        random_walk(torch.zeros(1, 4, 5), torch.zeros(5, 4))


def test_cache_blocks_match_the_oracle(monkeypatch):
    import napari_pcam.core.stages.random_walk as rw

    monkeypatch.setattr(rw, "CPU_BLOCK_ELEMENTS", 40)  # one grid row per block
    cams, boundary = _problem(9, 8)
    ours = rw.random_walk(cams, boundary, beta=6.0, exp_times=3, radius=5)
    torch.testing.assert_close(ours, dense_random_walk(cams, boundary, beta=6.0, exp_times=3, radius=5))
