import numpy as np
import pytest
import torch

from napari_pcam.core.models.cam import CamNet
from napari_pcam.core.stages.cam import point_loss


def test_zero_when_maps_match_points():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, :, :2] = 1.0  # class 1 on the left half
    maps[0, 1, :, 2:] = 1.0  # class 2 on the right half
    yx = torch.tensor([[1, 0], [2, 3]])
    cls = torch.tensor([1, 2])
    loss = point_loss(maps, [(yx, cls)], torch.tensor([[1.0, 1.0]]), size=(4, 4))
    assert float(loss) == pytest.approx(0.0, abs=1e-4)


def test_value_by_hand_with_background_click():
    maps = torch.full((1, 1, 4, 4), 0.5)
    maps[0, 0, 0, 0] = 1.0
    yx = torch.tensor([[0, 0], [3, 3]])
    cls = torch.tensor([1, 0])  # a click of class 1 at the peak, a background click at 0.5
    loss = point_loss(maps, [(yx, cls)], torch.tensor([[1.0]]), size=(4, 4))
    u = 1.0 / (1.0 + 1e-5), 0.5 / (1.0 + 1e-5)
    assert float(loss) == pytest.approx(((u[0] - 1) ** 2 + u[1] ** 2) / 2, rel=1e-4)


def test_absent_classes_do_not_count():
    maps = torch.rand(1, 2, 4, 4)
    yx, cls = torch.tensor([[0, 0]]), torch.tensor([1])
    a = point_loss(maps, [(yx, cls)], torch.tensor([[1.0, 0.0]]), size=(4, 4))
    b = point_loss(maps[:, :1], [(yx, cls)], torch.tensor([[1.0]]), size=(4, 4))
    assert float(a) == pytest.approx(float(b))


def test_upsampling_is_bilinear_to_crop_size():
    maps = torch.zeros(1, 1, 2, 2)
    maps[0, 0, 0, 0] = 1.0
    yx, cls = torch.tensor([[0, 0]]), torch.tensor([1])
    loss = point_loss(maps, [(yx, cls)], torch.tensor([[1.0]]), size=(8, 8))
    assert float(loss) == pytest.approx(0.0, abs=1e-4)  # the corner of the upsampled map is the peak


def test_gradient_reaches_the_backbone():
    torch.manual_seed(0)
    net = CamNet(backbone="resnet18", weights="none", num_classes=2)
    x = torch.randn(2, 3, 64, 64)
    _, raw = net(x)
    pts = [(torch.tensor([[5, 5], [40, 40]]), torch.tensor([1, 0])), (torch.tensor([[20, 30]]), torch.tensor([2]))]
    loss = point_loss(torch.relu(raw), pts, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), size=(64, 64))
    loss.backward()
    grad = net.backbone.stem[0].weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_detach_max_changes_gradient_only():
    maps = torch.rand(1, 1, 4, 4, requires_grad=True)
    args = ([(torch.tensor([[1, 1]]), torch.tensor([1]))], torch.tensor([[1.0]]))
    a = point_loss(maps, *args, size=(4, 4), detach_max=True)
    b = point_loss(maps, *args, size=(4, 4), detach_max=False)
    assert float(a) == pytest.approx(float(b))
    ga = torch.autograd.grad(a, maps)[0]
    gb = torch.autograd.grad(b, maps)[0]
    assert not torch.allclose(ga, gb)


def test_no_points_gives_zero_with_graph():
    maps = torch.rand(1, 1, 4, 4, requires_grad=True)
    loss = point_loss(maps, [(torch.zeros((0, 2), dtype=torch.long), torch.zeros(0, dtype=torch.long))],
                      torch.tensor([[1.0]]), size=(4, 4))
    loss.backward()
    assert float(loss) == 0.0 and np.all(maps.grad.numpy() == 0)


def test_a_background_map_is_one_at_background_clicks_and_zero_at_the_others():
    maps = torch.zeros(1, 2, 4, 4)  # class 1, then the background map
    maps[0, 0, :, :2] = 1.0
    maps[0, 1, :, 2:] = 1.0
    yx, cls = torch.tensor([[1, 0], [2, 3]]), torch.tensor([1, 0])
    assert float(point_loss(maps, [(yx, cls)], torch.tensor([[1.0]]), size=(4, 4))) == pytest.approx(0, abs=1e-4)
    swapped = maps.flip(1)  # background where class 1 was clicked: every value wrong on both maps
    assert float(point_loss(swapped, [(yx, cls)], torch.tensor([[1.0]]), size=(4, 4))) == pytest.approx(1, rel=1e-3)
    # without background clicks the background map still learns to be 0 at the class clicks
    only = point_loss(maps.flip(1), [(yx[:1], cls[:1])], torch.tensor([[1.0]]), size=(4, 4))
    assert float(only) == pytest.approx(1.0, rel=1e-3)
