"""PCAM training and CAM inference on tiny data: binary case, all-points mode, tiling, outputs."""

import dataclasses

import numpy as np
import pytest
import torch

from napari_pcam.core.config import CamConfig, CamInferenceConfig, RuntimeConfig
from napari_pcam.core.data.points import PointAnnotations
from napari_pcam.core.errors import DataError
from napari_pcam.core.models.cam import CamNet
from napari_pcam.core.progress import drain
from napari_pcam.core.stages.cam import train_cam
from napari_pcam.core.stages.cam_inference import compute_cams, stride16_cams


def test_training_yields_progress_with_losses(tiny_data, tiny_cam_config):
    records = list(_steps(train_cam(tiny_data.images, tiny_data.points, tiny_cam_config)))
    assert [r.step for r in records] == list(range(1, len(records) + 1)) and records[-1].total == len(records)
    assert all(np.isfinite(r.loss) and r.metrics["point_loss"] >= 0 for r in records)


def _steps(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


def test_binary_case_learns_from_points_although_labels_never_change(tiny_data):
    """One foreground class + background clicks: every image has the same label, the points teach."""
    p = tiny_data.points
    binary = PointAnnotations(p.image, p.yx, np.minimum(p.cls, 1), ("background", "object"))
    assert np.all(binary.image_labels(len(tiny_data.images)) == 1)
    cfg = CamConfig(backbone="resnet18", weights="none", crop_size=64, batch_size=2, epochs=1, min_steps=12,
                    alpha=1.0, lr_backbone=0.01, lr_classifier=0.1, flip=False, scale_range=(1.0, 1.0))
    losses = [r.metrics["point_loss"] for r in _steps(train_cam(tiny_data.images, binary, cfg))]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


def test_all_points_mode_needs_masks_and_uses_them(tiny_data, tiny_cam_config):
    cfg = dataclasses.replace(tiny_cam_config, point_mode="all")
    with pytest.raises(DataError, match="give ground-truth masks"):
        drain(train_cam(tiny_data.images, tiny_data.points, cfg))
    trained = drain(train_cam(tiny_data.images, tiny_data.points, cfg, masks=tiny_data.masks))
    assert trained.model.num_classes == 3


def test_masks_never_leak_into_click_training(tiny_data, tiny_cam_config):
    """Runs pass masks for evaluation: in the 'clicks' mode training must not see them (PCAM != PCAM-F)."""
    def weights(**kw):
        torch.manual_seed(0)
        trained = drain(train_cam(tiny_data.images, tiny_data.points, tiny_cam_config, **kw))
        return torch.cat([p.detach().flatten() for p in trained.model.parameters()])

    without = weights()
    torch.testing.assert_close(weights(masks=tiny_data.masks), without, rtol=0, atol=0)
    all_cfg = dataclasses.replace(tiny_cam_config, point_mode="all")
    torch.manual_seed(0)
    trained = drain(train_cam(tiny_data.images, tiny_data.points, all_cfg, masks=tiny_data.masks))
    assert not torch.equal(torch.cat([p.detach().flatten() for p in trained.model.parameters()]), without)


def test_fine_tuning_checks_classes(tiny_data, tiny_cam_config):
    trained = drain(train_cam(tiny_data.images, tiny_data.points, tiny_cam_config))
    other = PointAnnotations(tiny_data.points.image, tiny_data.points.yx, np.minimum(tiny_data.points.cls, 1),
                             ("background", "object"))
    with pytest.raises(DataError, match="cannot fine-tune"):
        drain(train_cam(tiny_data.images, other, tiny_cam_config, init=trained))


def test_cam_outputs_shapes_range_and_keys():
    torch.manual_seed(0)
    net = CamNet(backbone="resnet18", weights="none", num_classes=3).eval()
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    cams = compute_cams(net, img, CamInferenceConfig(), keys=[1, 3])
    assert cams.highres.shape == (2, 50, 70) and cams.lowres.shape == (2, 13, 18)
    assert cams.highres.max() <= 1.0 and cams.highres.min() >= 0.0
    np.testing.assert_array_equal(cams.keys, [1, 3])
    assert set(np.unique(cams.labels(0.3))) <= {0, 1, 3}


def test_no_keys_give_no_maps_without_running_the_network(monkeypatch):
    net = CamNet(backbone="resnet18", weights="none", num_classes=3).eval()
    monkeypatch.setattr(net, "cams", lambda x: pytest.fail("the network ran for an image with no class"))
    img = np.zeros((50, 70, 3), np.uint8)
    cams = compute_cams(net, img, CamInferenceConfig(), keys=[])
    assert cams.highres.shape == (0, 50, 70) and cams.lowres.shape == (0, 13, 18) and cams.keys.dtype == np.int64
    assert cams.labels(0.3).shape == (50, 70) and not cams.labels(0.3).any()
    assert cams.dense(3).shape == (3, 50, 70) and not cams.dense(3).any()


def test_tiled_inference_matches_whole_image():
    torch.manual_seed(0)
    net = CamNet(backbone="resnet18", weights="none", num_classes=2).eval()
    x = torch.randn(1, 3, 192, 256)
    whole = stride16_cams(net, x, CamInferenceConfig(tile_size=1024))
    tiled = stride16_cams(net, x, CamInferenceConfig(tile_size=128, tile_overlap=64))
    assert tiled.shape == whole.shape == (2, 12, 16)
    # tiles see less context at their borders; the interiors kept by the stitching must agree closely
    rel = (tiled - whole).abs().mean() / whole.abs().mean()
    assert float(rel) < 0.25
    corr = np.corrcoef(tiled.flatten().numpy(), whole.flatten().numpy())[0, 1]
    assert corr > 0.9


def test_unannotated_images_train_without_error(tiny_data, tiny_cam_config):
    keep = tiny_data.points.image != 0
    drain(train_cam(tiny_data.images, tiny_data.points.subset(keep), tiny_cam_config, runtime=RuntimeConfig(seed=1)))


def test_a_background_map_is_learnt_and_is_class_zero_of_the_cams(tiny_data, tiny_cam_config, tmp_path):
    from napari_pcam.core.stages.cam import TrainedCam

    config = dataclasses.replace(tiny_cam_config, background_map=True)
    trained = drain(train_cam(tiny_data.images, tiny_data.points, config))
    k = tiny_data.points.num_classes
    assert trained.model.classifier.out_channels == k + 1 and trained.model.background
    cams = compute_cams(trained.model, tiny_data.images.images[0], CamInferenceConfig(scales=(1.0,)), keys=[1, 2])
    np.testing.assert_array_equal(cams.keys, [0, 1, 2])
    assert cams.highres.shape[0] == 3 and cams.dense(k).shape[0] == k
    np.testing.assert_array_equal(cams.dense(k)[[0, 1]], cams.highres[1:])  # the dense maps are the classes'
    assert set(np.unique(cams.labels(0.3))) <= {0, 1, 2}
    trained.save(tmp_path / "pcam.pt")
    again = TrainedCam.load(tmp_path / "pcam.pt", tiny_data.class_names)
    assert again.model.background and again.model.classifier.out_channels == k + 1
    with pytest.raises(DataError, match="background_map"):
        drain(train_cam(tiny_data.images, tiny_data.points, tiny_cam_config, init=trained))
