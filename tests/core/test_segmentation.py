"""Training DeepLabv3+ on label maps, sliding-window prediction and checkpoints."""

import numpy as np
import pytest
import torch

from napari_pcam.core.config import DeepLabConfig
from napari_pcam.core.crf import crf_available, crf_probabilities
from napari_pcam.core.data.images import image_to_tensor, to_rgb8
from napari_pcam.core.data.synthetic import make_synthetic
from napari_pcam.core.errors import CheckpointError, ConfigError, DataError
from napari_pcam.core.progress import Progress, drain
from napari_pcam.core.stages.segmentation import (
    _loss,
    augment,
    build_deeplab,
    class_balance_weights,
    load_segmenter,
    save_segmenter,
    train_deeplab,
)
from napari_pcam.core.stages.segmentation_inference import predict, predict_logits, predict_probabilities
from progress_records import records_and_result

TINY = DeepLabConfig(
    backbone="resnet18", weights="none", lr=0.01, epochs=1, batch_size=2, crop_size=48, scale_range=(1.0, 1.0),
    flip=False, min_steps=12,
)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(2, 48, seed=3)


@pytest.fixture(scope="module")
def trained(data):
    records, seg = records_and_result(
        train_deeplab(data.images, data.masks, 4, TINY, device="cpu", seed=0, class_names=data.class_names))
    return seg, records


def test_training_yields_progress_and_reduces_the_loss(trained):
    seg, records = trained
    steps = [r for r in records if r.step > 0]
    assert all(isinstance(r, Progress) and r.stage == "deeplab" for r in records)
    assert [r.step for r in steps] == list(range(1, 13)) and steps[-1].total == 12
    assert all(np.isfinite(r.loss) for r in steps)
    assert np.mean(seg.losses[-3:]) < 0.8 * np.mean(seg.losses[:3])
    assert not seg.model.training


def test_sparse_click_labels_train_point_only_baseline(data):
    sparse = [np.full(m.shape, 255, np.uint8) for m in data.masks]
    for lab, mask in zip(sparse, data.masks):
        lab[5, 7], lab[30, 20] = mask[5, 7], mask[30, 20]
    cfg = DeepLabConfig(**{**TINY.__dict__, "min_steps": 2, "scale_range": (0.5, 1.5), "flip": True})
    seg = drain(train_deeplab(data.images, sparse, 4, cfg, device="cpu", seed=1))
    assert len(seg.losses) == 2 and all(np.isfinite(seg.losses))


def test_all_ignore_labels_are_a_clear_error(data):
    labels = [np.full(m.shape, 255, np.uint8) for m in data.masks]
    with pytest.raises(DataError, match="255"):
        drain(train_deeplab(data.images, labels, 4, TINY, device="cpu"))


def test_label_values_outside_the_classes_are_rejected(data):
    labels = [m.copy() for m in data.masks]
    labels[1][0, 0] = 7
    with pytest.raises(DataError, match="value 7"):
        drain(train_deeplab(data.images, labels, 4, TINY, device="cpu"))


def test_freeze_bn_without_pretrained_weights_is_a_config_error():
    with pytest.raises(ConfigError, match="freeze_bn"):
        DeepLabConfig(weights="none", freeze_bn=True)


def test_downscaling_keeps_every_clicked_pixel_and_alignment():
    lab = np.full((64, 64), 255, np.uint8)
    lab[[3, 4, 40, 63], [3, 4, 17, 0]] = [1, 2, 3, 1]  # neighbouring clicks included
    img = torch.from_numpy(np.where(lab == 255, 0, lab).astype(np.float32))[None].repeat(3, 1, 1)
    cfg = DeepLabConfig(crop_size=64, scale_range=(0.5, 0.5), flip=True)
    for seed in range(4):
        x, y = augment(img, torch.from_numpy(lab.astype(np.int64)), cfg, np.random.default_rng(seed))
        assert x.shape == (3, 64, 64) and y.shape == (64, 64)
        assert sorted(y[y != 255].tolist()) == [1, 1, 2, 3] or sorted(y[y != 255].tolist()) == [1, 2, 3]
        assert (y[32:, :] == 255).all() and ((y[:, 32:] == 255).all() or (y[:, :32] == 255).all())  # padding


def test_augmentation_moves_image_and_labels_together():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, (40, 56)).astype(np.int64)
    img = torch.from_numpy(lab.astype(np.float32))[None]
    cfg = DeepLabConfig(crop_size=32, scale_range=(1.0, 1.0), flip=True)
    for seed in range(6):
        x, y = augment(img, torch.from_numpy(lab), cfg, np.random.default_rng(seed))
        assert torch.equal(x[0].long(), y)


def test_a_click_map_stacked_on_the_labels_follows_the_same_transform():
    rng = np.random.default_rng(1)
    lab = torch.from_numpy(rng.integers(0, 4, (40, 56)).astype(np.int64))
    clicks = torch.full_like(lab, 255)
    clicks[[2, 20, 39], [3, 30, 55]] = lab[[2, 20, 39], [3, 30, 55]]
    img = torch.from_numpy(rng.random((3, 40, 56), dtype=np.float32))
    cfg = DeepLabConfig(crop_size=32, scale_range=(0.5, 1.5), flip=True)
    for seed in range(6):
        x1, y1 = augment(img, lab, cfg, np.random.default_rng(seed))
        x2, y2 = augment(img, torch.stack([lab, clicks]), cfg, np.random.default_rng(seed))
        assert torch.equal(x1, x2) and y2.shape == (2, 32, 32) and torch.equal(y2[0], y1)
        kept = y2[1] != 255
        assert kept.any() or seed > 0  # a crop may miss every click; where kept, it agrees with the labels
        assert set(y2[1][kept].tolist()) <= {int(v) for v in lab[[2, 20, 39], [3, 30, 55]]}


def test_click_loss_is_added_with_its_weight_averaged_over_the_clicks_alone():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    clicks = torch.full_like(labels, 255)
    clicks[0, 1, 2], clicks[1, 5, 5] = 2, 0
    plain, _ = _loss(logits, (None, labels))
    ce = torch.nn.functional.cross_entropy(logits, labels)
    click_ce = torch.nn.functional.cross_entropy(logits, clicks, ignore_index=255)
    assert torch.allclose(plain, ce)
    both, metrics = _loss(logits, (None, torch.stack([labels, clicks], 1)), click_weight=2.0)
    assert torch.allclose(both, ce + 2.0 * click_ce)
    assert metrics["click_loss"] == pytest.approx(float(click_ce), rel=1e-5)
    none = torch.full_like(labels, 255)  # a crop without clicks adds nothing
    assert torch.allclose(_loss(logits, (None, torch.stack([labels, none], 1)), click_weight=5.0)[0], ce)


def test_click_norm_labels_weighs_each_clicked_pixel_as_click_weight_labelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0] = 255  # 120 labelled pixels
    clicks = torch.full_like(labels, 255)
    clicks[0, 1, 2], clicks[1, 5, 5] = 2, 0
    per_pixel = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    per_click = torch.nn.functional.cross_entropy(logits, clicks, ignore_index=255, reduction="none")
    stacked = (None, torch.stack([labels, clicks], 1))
    both, metrics = _loss(logits, stacked, click_weight=10.0, click_norm="labels")
    assert torch.allclose(both, (per_pixel.sum() + 10 * per_click.sum()) / (120 + 10 * 2))
    assert metrics["click_share"] == pytest.approx(20 / 140)
    assert metrics["click_loss"] == pytest.approx(float(per_click.sum() / 2), rel=1e-5)
    # the clicks' share follows how many there are: half the clicks, about half the share (unlike 'clicks')
    one = clicks.clone()
    one[1, 5, 5] = 255
    assert _loss(logits, (None, torch.stack([labels, one], 1)), click_weight=10.0,
                 click_norm="labels")[1]["click_share"] == pytest.approx(10 / 130)
    none = torch.full_like(labels, 255)  # a crop without clicks: the plain average
    assert torch.allclose(_loss(logits, (None, torch.stack([labels, none], 1)), click_weight=10.0,
                                click_norm="labels")[0], _loss(logits, (None, labels))[0])
    w = torch.tensor([0.5, 2.0, 1.0])  # class weights weigh the labelled pixels, not the clicks
    weighted = (w[labels.clamp(max=2)] * per_pixel * (labels != 255)).sum()
    mass = w[labels[labels != 255]].sum()
    assert torch.allclose(_loss(logits, stacked, click_weight=10.0, click_norm="labels", class_weights=w)[0],
                          (weighted + 10 * per_click.sum()) / (mass + 20))
    empty = torch.full_like(labels, 255)  # nothing labelled, nothing clicked: 0, no NaN
    assert _loss(logits, (None, torch.stack([empty, empty], 1)), click_weight=10.0,
                 click_norm="labels")[0].item() == 0.0
    with pytest.raises(ConfigError, match="deeplab.click_norm='batch' is not valid"):
        DeepLabConfig(click_norm="batch")


def test_class_balance_weights_are_median_frequency_over_each_class_frequency():
    labels = [np.array([[0, 0, 0, 0], [0, 0, 1, 1], [255, 255, 255, 3]], np.uint8),
              np.array([[0, 0, 1, 1]], np.uint8)]  # counts 8, 4, 0, 1 of 13 labelled pixels
    weights = class_balance_weights(labels, 4)
    freq = np.array([8, 4, 1]) / 13
    assert weights.dtype == np.float32
    assert weights[[0, 1, 3]] == pytest.approx(np.median(freq) / freq) and weights[2] == 1.0  # 2: no pixels
    rare = [np.array([[0] * 999 + [1]], np.uint8)]  # 1 in 1000: 500 clipped at 10
    assert class_balance_weights(rare, 2) == pytest.approx([0.5 / 0.999, 10.0])
    common = [np.array([[0] * 999 + [1] + [2] * 5000], np.uint8)]  # median 999/6000 over 5000/6000: 0.2
    assert class_balance_weights(common, 3) == pytest.approx([1.0, 10.0, 0.1998], rel=1e-3)
    assert class_balance_weights([np.full((2, 2), 255, np.uint8)], 3) == pytest.approx([1, 1, 1])


def test_class_weights_weigh_the_label_term_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0] = 255
    clicks = torch.full_like(labels, 255)
    clicks[0, 1, 2], clicks[1, 5, 5] = 2, 0
    w = torch.tensor([0.5, 2.0, 1.0])
    weighted = torch.nn.functional.cross_entropy(logits, labels, weight=w, ignore_index=255)
    click_ce = torch.nn.functional.cross_entropy(logits, clicks, ignore_index=255)
    assert torch.allclose(_loss(logits, (None, labels), class_weights=w)[0], weighted)
    both, _ = _loss(logits, (None, torch.stack([labels, clicks], 1)), click_weight=2.0, class_weights=w)
    assert torch.allclose(both, weighted + 2.0 * click_ce)
    assert not torch.allclose(weighted, _loss(logits, (None, labels))[0])
    empty = torch.full_like(labels, 255)  # a crop without labels adds nothing, and no NaN
    assert _loss(logits, (None, empty), class_weights=w)[0].item() == 0.0


def test_class_balance_trains_and_reports_its_weights(data):
    cfg = DeepLabConfig(**{**TINY.__dict__, "min_steps": 2, "class_balance": True})
    records, seg = records_and_result(train_deeplab(data.images, data.masks, 4, cfg, device="cpu", seed=1,
                                                    class_names=data.class_names))
    assert len(seg.losses) == 2 and all(np.isfinite(seg.losses))
    expected = class_balance_weights(data.masks, 4)
    message = next(r.message for r in records if r.message.startswith("class weights"))
    assert message == "class weights " + ", ".join(f"{n} {w:.2f}" for n, w in zip(data.class_names, expected))
    with pytest.raises(ConfigError, match="deeplab.class_balance='yes' is not valid"):
        DeepLabConfig(class_balance="yes")


def test_click_weight_trains_on_labels_and_clicks_and_needs_the_click_maps(data):
    clicks = [np.full(m.shape, 255, np.uint8) for m in data.masks]
    for lab, mask in zip(clicks, data.masks):
        lab[5, 7], lab[30, 20] = mask[5, 7], mask[30, 20]
    cfg = DeepLabConfig(**{**TINY.__dict__, "min_steps": 2, "scale_range": (0.5, 1.5), "click_weight": 1.0})
    seg = drain(train_deeplab(data.images, data.masks, 4, cfg, device="cpu", seed=1, clicks=clicks))
    assert len(seg.losses) == 2 and all(np.isfinite(seg.losses))
    per_pixel = DeepLabConfig(**{**cfg.__dict__, "click_weight": 50.0, "click_norm": "labels"})
    other = drain(train_deeplab(data.images, data.masks, 4, per_pixel, device="cpu", seed=1, clicks=clicks))
    assert all(np.isfinite(other.losses)) and other.losses != seg.losses
    with pytest.raises(ConfigError, match="needs the click maps"):
        drain(train_deeplab(data.images, data.masks, 4, cfg, device="cpu"))
    with pytest.raises(ConfigError, match="click_weight=0"):
        drain(train_deeplab(data.images, data.masks, 4, TINY, device="cpu", clicks=clicks))
    bad = [c.copy() for c in clicks]
    bad[0][0, 0] = 9
    with pytest.raises(DataError, match="value 9"):
        drain(train_deeplab(data.images, data.masks, 4, cfg, device="cpu", clicks=bad))
    with pytest.raises(ConfigError, match="click_weight"):
        DeepLabConfig(click_weight=-1.0)


def test_tiled_prediction_is_the_mean_of_the_tile_outputs(trained):
    seg, _ = trained
    image = make_synthetic(1, (64, 96), seed=5).images.images[0]
    tiled = predict_logits(seg.model, image, tile_size=64, tile_overlap=32, batch=2)
    x = image_to_tensor(image)
    with torch.no_grad():
        tiles = seg.model(torch.stack([x[:, :, 0:64], x[:, :, 32:96]]))
    ref = torch.zeros(4, 64, 96)
    ref[:, :, :64] += tiles[0]
    ref[:, :, 32:] += tiles[1]
    ref[:, :, 32:64] /= 2
    torch.testing.assert_close(tiled, ref, rtol=1e-4, atol=1e-4)


def test_whole_image_prediction_when_it_fits_equals_the_model(trained):
    seg, _ = trained
    image = make_synthetic(1, (48, 80), seed=6).images.images[0]
    labels = predict(seg.model, image, tile_size=1024, tile_overlap=256)
    with torch.no_grad():
        ref = seg.model(image_to_tensor(image)[None])[0].argmax(0).numpy()
    assert labels.dtype == np.uint8 and labels.shape == (48, 80)
    np.testing.assert_array_equal(labels, ref)


def test_prediction_with_other_channel_count_is_a_clear_error(trained):
    seg, _ = trained
    with pytest.raises(DataError, match="channel"):
        predict(seg.model, np.zeros((32, 32, 1), np.uint8))


def test_checkpoint_round_trip_gives_identical_predictions(trained, tmp_path, data):
    seg, _ = trained
    save_segmenter(seg, tmp_path / "deeplab.pt")
    loaded = load_segmenter(tmp_path / "deeplab.pt", class_names=data.class_names)
    assert loaded.config == seg.config and loaded.class_names == seg.class_names
    image = data.images.images[0]
    np.testing.assert_array_equal(loaded.predict(image), seg.predict(image))
    assert [p.name for p in tmp_path.iterdir()] == ["deeplab.pt"]  # atomic write leaves no temp file


def test_checkpoint_errors(trained, tmp_path):
    seg, _ = trained
    path = tmp_path / "deeplab.pt"
    save_segmenter(seg, path)
    with pytest.raises(CheckpointError, match="classes"):
        load_segmenter(path, class_names=("background", "a", "b", "c"))
    data = torch.load(path, weights_only=True)
    torch.save({**data, "format_version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version"):
        load_segmenter(tmp_path / "v99.pt")
    torch.save({**data, "kind": "pcam"}, tmp_path / "pcam.pt")
    with pytest.raises(CheckpointError, match="deeplab"):
        load_segmenter(tmp_path / "pcam.pt")
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_segmenter(tmp_path / "bad.pt")


def test_loader_workers_make_the_same_crops_as_the_main_process(tiny_data):
    """Crops come from a plan of seeded crops: worker processes make the same ones (up to resize rounding)."""
    import torch

    from napari_pcam.core.config import DeepLabConfig
    from napari_pcam.core.data.crops import crop_loader
    from napari_pcam.core.data.images import image_to_tensor
    from napari_pcam.core.progress import drain
    from napari_pcam.core.stages.segmentation import _DeepLabCrop, train_deeplab

    cfg = DeepLabConfig(backbone="resnet18", weights="none", crop_size=48, batch_size=2, epochs=1, min_steps=3)
    make = _DeepLabCrop([image_to_tensor(i) for i in tiny_data.images.images],
                        [torch.from_numpy(np.asarray(m, np.int64)) for m in tiny_data.masks], cfg)
    plan = [[0, 1], [2, 3], [3, 0]]
    a, b = list(crop_loader(make, plan, 5)), list(crop_loader(make, plan, 5, num_workers=2))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        torch.testing.assert_close(x[0], y[0], rtol=0, atol=1e-5)
        assert torch.equal(x[1], y[1])
    trained = drain(train_deeplab(tiny_data.images, tiny_data.masks, 4, cfg, device="cpu", seed=5, num_workers=2))
    assert len(trained.losses) == 3 and all(np.isfinite(trained.losses))


def test_test_time_augmentation_averages_probabilities(trained):
    seg, _ = trained
    image = make_synthetic(1, (48, 64), seed=7).images.images[0]
    plain = predict_probabilities(seg.model, image)
    torch.testing.assert_close(plain, predict_logits(seg.model, image).softmax(0))
    x = image_to_tensor(image)
    with torch.no_grad():
        mirrored = seg.model(x.flip(-1)[None])[0].flip(-1).softmax(0)
        small = seg.model(torch.nn.functional.interpolate(x[None], size=(24, 32), mode="bilinear"))
    small = torch.nn.functional.interpolate(small, size=(48, 64), mode="bilinear")[0].softmax(0)
    flipped = predict_probabilities(seg.model, image, flip=True)
    torch.testing.assert_close(flipped, (plain + mirrored) / 2, rtol=1e-4, atol=1e-5)
    both = predict_probabilities(seg.model, image, scales=(1.0, 0.5))
    torch.testing.assert_close(both, (plain + small) / 2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both.sum(0), torch.ones(48, 64))
    labels = predict(seg.model, image, scales=(1.0, 0.5), flip=True)
    np.testing.assert_array_equal(labels, predict_probabilities(seg.model, image, scales=(1.0, 0.5), flip=True)
                                  .argmax(0).numpy())


def test_segmenter_uses_the_configs_test_time_settings(trained):
    import dataclasses

    seg, _ = trained
    image = make_synthetic(1, (48, 64), seed=8).images.images[0]
    tta = dataclasses.replace(seg, config=dataclasses.replace(seg.config, test_flip=True, test_scales=(1.0, 0.75)))
    ref = predict_probabilities(seg.model, image, scales=(1.0, 0.75), flip=True).argmax(0).numpy()
    np.testing.assert_array_equal(tta.predict(image), ref)


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 is not installed")
def test_crf_setting_refines_the_probabilities_in_or_out_of_worker_processes(trained):
    import dataclasses

    seg, _ = trained
    torch.manual_seed(0)  # an untrained network: uncertain, patchy probabilities that the CRF changes
    seg = dataclasses.replace(seg, model=build_deeplab(seg.config, num_classes=4, in_channels=3).eval())
    images = make_synthetic(3, (48, 64), seed=8).images.images
    crf = dataclasses.replace(seg, config=dataclasses.replace(seg.config, crf=True))
    expected = [crf_probabilities(to_rgb8(img), predict_probabilities(seg.model, img).numpy()) for img in images]
    np.testing.assert_array_equal(crf.predict(images[0]), expected[0])
    assert not np.array_equal(expected[0], seg.predict(images[0])), "the CRF changes some pixels here"
    for workers in (0, 1):
        got = list(crf.predict_many(iter(images), crf_workers=workers))
        assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, expected)), workers
    plain = list(seg.predict_many(iter(images), crf_workers=1))  # CRF off: workers unused
    assert all(np.array_equal(a, seg.predict(img)) for a, img in zip(plain, images))


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 is not installed")
def test_labels_with_and_without_the_crf_come_from_one_pass_in_or_out_of_workers(trained):
    import dataclasses

    from napari_pcam.core.stages.segmentation_inference import predict_many_with_and_without_crf

    seg, _ = trained
    torch.manual_seed(0)
    model = build_deeplab(seg.config, num_classes=4, in_channels=3).eval()
    images = make_synthetic(3, (48, 64), seed=8).images.images
    probs = [predict_probabilities(model, img).numpy() for img in images]
    expected = [(p.argmax(0), crf_probabilities(to_rgb8(img), p)) for img, p in zip(images, probs)]
    assert any(not np.array_equal(a, b) for a, b in expected), "the CRF changes some pixels here"
    config = dataclasses.replace(seg.config, crf=True)
    for workers in (0, 1):
        got = list(predict_many_with_and_without_crf(model, iter(images), config, crf_workers=workers))
        assert len(got) == 3, workers
        for (plain, crf), (want_plain, want_crf) in zip(got, expected):
            assert plain.dtype == crf.dtype == np.uint8
            np.testing.assert_array_equal(plain, want_plain)
            np.testing.assert_array_equal(crf, want_crf)


def test_empty_test_scales_are_a_config_error():
    with pytest.raises(ConfigError, match="test_scales"):
        DeepLabConfig(test_scales=())


def test_crf_loss_is_added_with_its_weight_on_the_unpadded_pixels():
    from napari_pcam.core.crf_loss import gated_crf_loss, image_from_tensor

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16)
    x = torch.randn(2, 3, 16, 16)
    labels = torch.randint(0, 3, (2, 16, 16))
    valid = torch.ones_like(labels)
    valid[1, :, 10:] = 255  # padding of the second crop
    ce = torch.nn.functional.cross_entropy(logits, labels)
    crf = gated_crf_loss(logits, image_from_tensor(x), valid != 255)
    total, metrics = _loss(logits, (x, torch.stack([labels, valid], 1)), crf_weight=0.5)
    assert torch.allclose(total, ce + 0.5 * crf)
    assert metrics["crf_loss"] == pytest.approx(float(crf), rel=1e-5)
    assert crf.item() != pytest.approx(gated_crf_loss(logits, image_from_tensor(x)).item())
    clicks = torch.full_like(labels, 255)
    clicks[0, 3, 3] = 1
    total, metrics = _loss(logits, (x, torch.stack([labels, clicks, valid], 1)), click_weight=2.0, crf_weight=0.5)
    click_ce = torch.nn.functional.cross_entropy(logits, clicks, ignore_index=255)
    assert torch.allclose(total, ce + 2.0 * click_ce + 0.5 * crf)
    assert set(metrics) == {"label_loss", "click_loss", "crf_loss"}


def test_crf_loss_trains_with_and_without_click_maps(data):
    clicks = [np.full(m.shape, 255, np.uint8) for m in data.masks]
    for lab, mask in zip(clicks, data.masks):
        lab[5, 7], lab[30, 20] = mask[5, 7], mask[30, 20]
    cfg = DeepLabConfig(**{**TINY.__dict__, "min_steps": 2, "scale_range": (0.5, 1.5), "crf_loss": 0.1})
    records, seg = records_and_result(train_deeplab(data.images, clicks, 4, cfg, device="cpu", seed=1))  # + CRF loss
    assert len(seg.losses) == 2 and all(np.isfinite(seg.losses))
    assert all("crf_loss" in r.metrics for r in records if r.step > 0)
    both = DeepLabConfig(**{**cfg.__dict__, "click_weight": 1.0})
    seg = drain(train_deeplab(data.images, data.masks, 4, both, device="cpu", seed=1, clicks=clicks))
    assert len(seg.losses) == 2 and all(np.isfinite(seg.losses))
    with pytest.raises(ConfigError, match="deeplab.crf_loss"):
        DeepLabConfig(crf_loss=-0.1)
