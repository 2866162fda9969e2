"""IRNet network, training, checkpoints and end-to-end refinement on tiny synthetic data."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_pcam.core.config import AffinityConfig, IrnConfig, RandomWalkConfig
from napari_pcam.core.data.cams import CamMaps
from napari_pcam.core.data.synthetic import make_synthetic
from napari_pcam.core.errors import CheckpointError, DataError, MissingStageError
from napari_pcam.core.models.irn import IrnNet
from napari_pcam.core.progress import Progress, drain
from napari_pcam.core.stages.instances import refine_instances
from napari_pcam.core.stages.irn import irn_loss, load_irn, train_irn
from napari_pcam.core.stages.refine import refine_images
from progress_records import records_and_result

TINY = IrnConfig(backbone="resnet18", weights="none", radius=5, crop_size=48, batch_size=2, epochs=1, min_steps=3)


def cams_from_masks(masks, num_classes=3):
    """Blurred one-hot ground truth as stand-in PCAMs (max-normalised per class)."""
    out = []
    for m in masks:
        keys = np.array([c for c in range(1, num_classes + 1) if (m == c).any()], np.int64)
        high = np.zeros((0, *m.shape), np.float32)
        if len(keys):
            high = np.stack([ndimage.gaussian_filter((m == c).astype(np.float32), 3) for c in keys])
        high = high / np.maximum(high.max(axis=(1, 2), keepdims=True), 1e-5)
        h, w = m.shape
        size = ((h + 3) // 4, (w + 3) // 4)
        low = torch.nn.functional.interpolate(torch.from_numpy(high)[None], size=size, mode="bilinear")[0]
        out.append(CamMaps(keys, high.astype(np.float32), low.numpy()))
    return out


@pytest.fixture(scope="module")
def data():
    syn = make_synthetic(2, 64, seed=3)
    return syn.images, syn.masks, cams_from_masks(syn.masks)


@pytest.fixture(scope="module")
def trained(data):
    images, _, cams = data
    steps, irn = records_and_result(train_irn(images, cams, TINY, AffinityConfig(), device="cpu", seed=0))
    return irn, steps


def test_network_shapes_and_frozen_backbone():
    net = IrnNet(backbone="resnet18", weights="none", in_channels=1, displacement=True)
    edge, disp = net.train()(torch.randn(2, 1, 50, 72))
    assert edge.shape == (2, 1, 13, 18) and disp.shape == (2, 2, 13, 18)
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(not m.training for m in net.backbone.modules())
    no_dp = IrnNet(backbone="resnet18", weights="none", displacement=False)
    assert no_dp(torch.randn(1, 3, 32, 32))[1] is None


def test_loss_with_all_ignored_labels_is_zero_not_nan():
    edge, disp = torch.randn(1, 1, 8, 8, requires_grad=True), torch.randn(1, 2, 8, 8, requires_grad=True)
    loss, _ = irn_loss(edge, disp, torch.full((1, 8, 8), 255), radius=5)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(edge.grad).all()


def test_loss_prefers_boundary_between_classes():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    good, bad = torch.full((1, 1, 8, 8), -6.0), torch.full((1, 1, 8, 8), -6.0)
    good[..., 3:5] = 6.0
    bad[..., 0] = 6.0
    assert irn_loss(good, None, labels, 5)[0] < irn_loss(bad, None, labels, 5)[0]


def test_training_yields_progress_and_finite_losses(trained):
    result, steps = trained
    train_steps = [p for p in steps if not p.message]
    assert [p.step for p in train_steps] == [1, 2, 3] and all(isinstance(p, Progress) for p in steps)
    assert all(np.isfinite(p.loss) for p in train_steps) and len(result.losses) == 3
    assert torch.isfinite(result.model.dp_mean).all()


def test_checkpoint_round_trip(trained, data, tmp_path):
    result, _ = trained
    path = tmp_path / "irn.pt"
    result.save(path)
    loaded = load_irn(path)
    x = torch.randn(1, 3, 32, 32)
    result.model.eval()
    for a, b in zip(result.model(x), loaded.model(x)):
        torch.testing.assert_close(a, b)
    assert loaded.config == result.config


def test_checkpoint_errors(tmp_path):
    with pytest.raises(MissingStageError, match="train it first"):
        load_irn(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_irn(bad)
    other = tmp_path / "other.pt"
    torch.save({"format_version": 1, "kind": "pcam", "state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="expected 'irn'"):
        load_irn(other)
    torch.save({"format_version": 99, "kind": "irn", "state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="version"):
        load_irn(other)


def test_same_weights_need_the_pcam_backbone(data):
    images, _, cams = data
    with pytest.raises(MissingStageError, match="PCAM"):
        drain(train_irn(images, cams, dataclasses.replace(TINY, weights="same"), AffinityConfig()))


def test_all_ignored_labels_are_an_error(data):
    images, _, cams = data
    flat = [CamMaps(c.keys, np.full_like(c.highres, 0.1), c.lowres) for c in cams]  # between both thresholds
    with pytest.raises(DataError, match="no confident pixels"):
        drain(train_irn(images, flat, TINY, AffinityConfig()))


def test_refine_end_to_end(trained, data):
    images, masks, cams = data
    config = RandomWalkConfig(exp_times=5)
    labels = drain(refine_images(images, cams, trained[0], config, device="cpu"))
    for lab, mask, cam in zip(labels, masks, cams):
        assert lab.shape == mask.shape and lab.dtype == np.uint8
        assert set(np.unique(lab)) <= {0, *cam.keys.tolist()}


def test_instances(trained, data):
    images, _, cams = data
    config = RandomWalkConfig(exp_times=4, centroid_iterations=20, min_instance_area=0)
    inst, classes = refine_instances(images.images[0], cams[0], trained[0].model, config=config)
    assert inst.shape == images.images[0].shape[:2] and inst.dtype == np.int32
    assert inst.max() == len(classes) and set(classes.tolist()) <= set(cams[0].keys.tolist())


def test_mismatched_cams_are_an_error(trained, data):
    images, _, cams = data
    small = CamMaps(cams[0].keys, cams[0].highres, cams[0].lowres[:, :-1])
    with pytest.raises(DataError, match="recompute"):
        drain(refine_images(images, [small, cams[1]], trained[0], RandomWalkConfig(exp_times=2)))


def test_augmentation_moves_labels_with_the_image():
    from napari_pcam.core.data.images import image_to_tensor
    from napari_pcam.core.stages.irn import _augment

    rng = np.random.default_rng(0)
    label = np.zeros((40, 52), np.uint8)
    label[5:30, 3:20] = 1
    label[:, 45:] = 255
    image = np.where(label == 1, 255, 0).astype(np.uint8)[..., None]
    config = IrnConfig(crop_size=48, scale_range=(0.7, 1.4))
    for _ in range(6):
        img, lab = _augment(image_to_tensor(image), label, config, rng)
        assert img.shape == (1, 48, 48) and lab.shape == (12, 12)
        bright = (img[0, 2::4, 2::4] > 0).numpy()
        known = lab.numpy() != 255
        assert (bright[known] == (lab.numpy()[known] == 1)).mean() > 0.9


def test_irn_loader_workers_make_the_same_crops(tiny_data):
    """Crops come from a plan of seeded crops: worker processes change nothing in the training."""
    from napari_pcam.core.data.crops import crop_loader
    from napari_pcam.core.data.images import image_to_tensor
    from napari_pcam.core.stages.irn import _IrnCrop

    tensors = [image_to_tensor(img) for img in tiny_data.images.images]
    labels = [np.asarray(m, np.uint8) for m in tiny_data.masks]
    make = _IrnCrop(tensors, labels, IrnConfig(crop_size=32))
    plan = [[0, 1], [2, 3], [1, 1]]
    a = list(crop_loader(make, plan, 7))
    b = list(crop_loader(make, plan, 7, num_workers=2))
    assert len(a) == 3
    for x, y in zip(a, b):  # workers run torch single-threaded: the resize may round differently
        torch.testing.assert_close(x[0], y[0], rtol=0, atol=1e-5)
        assert torch.equal(x[1], y[1])
    assert not torch.equal(a[0][0][0], list(crop_loader(make, plan, 8))[0][0][0])  # the seed matters


def test_instances_leave_a_learnt_background_map_out(trained, data):
    images, _, cams = data
    config = RandomWalkConfig(exp_times=4, centroid_iterations=20, min_instance_area=0)
    c = cams[0]
    with_bg = CamMaps(np.concatenate([[0], c.keys]), np.concatenate([np.ones_like(c.highres[:1]), c.highres]),
                      np.concatenate([np.ones_like(c.lowres[:1]), c.lowres]))
    a = refine_instances(images.images[0], c, trained[0].model, config=config)
    b = refine_instances(images.images[0], with_bg, trained[0].model, config=config)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
