"""Pair geometry of IRNet: directions, paths, pair labels, affinities."""

import pytest
import torch

from napari_pcam.core.stages.pairs import pair_labels, path_affinity, path_offsets, search_directions


@pytest.mark.parametrize("radius, count", [(5, 34), (10, 152), (2, 4)])
def test_direction_counts(radius, count):
    dirs = search_directions(radius)
    assert len(dirs) == count
    assert len({tuple(d) for d in dirs}) == count
    # half disc: no direction together with its opposite
    assert not {tuple(d) for d in dirs} & {(-y, -x) for y, x in dirs}


def test_paths_by_hand():
    assert path_offsets(0, 3).tolist() == [[0, 0], [0, 1], [0, 2], [0, 3]]
    assert sorted(path_offsets(1, 1).tolist()) == [[0, 0], [0, 1], [1, 0], [1, 1]]
    expected = [[0, 0], [0, 1], [1, 0], [1, 1], [1, 2], [1, 3], [2, 2], [2, 3]]
    assert sorted(path_offsets(2, 3).tolist()) == expected
    assert sorted(path_offsets(1, -2).tolist()) == [[0, -2], [0, -1], [0, 0], [1, -2], [1, -1], [1, 0]]


def test_pair_labels_on_tiny_map():
    labels = torch.tensor([[0, 0, 1], [1, 1, 255]])
    bg, fg, neg = pair_labels(labels, radius=2)
    dirs = [tuple(d) for d in search_directions(2)]
    assert dirs == [(0, 1), (1, -1), (1, 0), (1, 1)]
    right, down_left, down, down_right = range(4)
    assert bg[right].tolist() == [[1, 0, 0], [0, 0, 0]]
    assert fg[right].tolist() == [[0, 0, 0], [1, 0, 0]]
    assert neg[right].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert neg[down].tolist() == [[1, 1, 0], [0, 0, 0]]
    assert fg[down_left].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert neg[down_left].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert neg[down_right].tolist() == [[1, 0, 0], [0, 0, 0]]
    assert (bg + fg + neg).max() == 1  # each pair has at most one label


def test_affinity_from_boundary_by_hand():
    boundary = torch.full((3, 3), 0.1, dtype=torch.float64)
    boundary[1, 1] = 0.8
    aff = path_affinity(boundary, radius=2)
    right, down_left, down, down_right = range(4)
    assert aff.shape == (4, 3, 3)
    assert aff[right, 0, 0] == pytest.approx(0.9)
    assert aff[right, 1, 0] == pytest.approx(0.2)  # path ends on the boundary pixel
    assert aff[down_right, 0, 0] == pytest.approx(0.2)  # diagonal path touches (0,1),(1,0),(1,1)
    assert aff[down_left, 0, 2] == pytest.approx(0.2)
    assert aff[right, 0, 2] == 0.0  # destination outside the grid
    assert aff[down, 2, 1] == 0.0


def test_affinity_is_differentiable():
    boundary = torch.rand(6, 7, requires_grad=True)
    path_affinity(boundary, radius=3).sum().backward()
    assert torch.isfinite(boundary.grad).all() and boundary.grad.abs().sum() > 0
