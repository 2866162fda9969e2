"""The training skeleton: plans, poly schedule, optimiser step, the step loop and the trained-network record."""

import numpy as np
import pytest
import torch

from napari_pcam.core.config import CamConfig
from napari_pcam.core.errors import CheckpointError, DataError
from napari_pcam.core.models.cam import CamNet
from napari_pcam.core.progress import drain
from napari_pcam.core.stages.cam import TrainedCam
from napari_pcam.core.training import (
    RankBatchSampler,
    epoch_keys,
    fit,
    grad_scaler,
    load_state,
    optimizer_step,
    planned_steps,
    poly_schedule,
    shuffled_batches,
)
from progress_records import records_and_result


def test_shuffled_batches_are_the_old_irnet_and_deeplab_plan():
    rng, plan = np.random.default_rng(3), []
    order: list[int] = []
    for _ in range(7):  # the loop IRNet and DeepLab each wrote
        while len(order) < 3:
            order += list(rng.permutation(5))
        plan.append([int(i) for i in order[:3]])
        order = order[3:]
    assert shuffled_batches(5, 3, 7, np.random.default_rng(3)) == plan


def test_epoch_keys_are_the_old_pcam_epochs_and_crop_seeds():
    sampler, old = RankBatchSampler(7, 2, torch.Generator().manual_seed(1)), []
    for epoch in range(3):  # 3 batches an epoch (the odd image dropped), 8 steps
        old += [[(epoch, i, i) for i in b] for b in sampler]
    assert epoch_keys(7, 2, 8, torch.Generator().manual_seed(1)) == old[:8]


def test_poly_schedule_is_the_closed_form_formula_exactly():
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    opt = torch.optim.SGD([{"params": params[:1], "lr": 0.007}, {"params": params[1:], "lr": 0.1}])
    schedule, seen = poly_schedule(opt, 10), []
    for _ in range(10):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        schedule.step()
    assert seen == [[lr * (1 - s / 10) ** 0.9 for lr in (0.007, 0.1)] for s in range(10)]


def test_optimizer_step_on_the_cpu_is_a_plain_sgd_step():
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3)
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    scaler = grad_scaler(torch.device("cpu"), amp=True)
    assert not scaler.is_enabled()
    optimizer_step(opt_a, scaler, a(x).square().sum())
    b(x).square().sum().backward()
    opt_b.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def _fit(model, losses):
    batches = [(torch.ones(2, 3),) for _ in losses]

    def loss_fn(out, batch):
        return out.sum() * 0 + losses.pop(0), {"part": 1.0}

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return fit("toy", model, opt, batches, len(batches), loss_fn, device=torch.device("cpu"), amp=True,
               lr_settings="toy.lr")


def test_fit_yields_one_record_per_step_with_its_lr_and_returns_the_losses():
    records, losses = records_and_result(_fit(torch.nn.Linear(3, 1), [3.0, 2.0, 1.0]))
    assert [(r.stage, r.step, r.total, r.loss) for r in records] == [("toy", 1, 3, 3.0), ("toy", 2, 3, 2.0),
                                                                      ("toy", 3, 3, 1.0)]
    assert losses == [3.0, 2.0, 1.0]
    assert [r.metrics["lr"] for r in records] == [0.1 * (1 - s / 3) ** 0.9 for s in range(3)]
    assert all(r.metrics["part"] == 1.0 and r.metrics["images_per_s"] > 0 for r in records)


def test_stopping_the_generator_cancels_and_leaves_the_model_in_eval_mode():
    model = torch.nn.Linear(3, 1)
    gen = _fit(model, [1.0, 1.0, 1.0])
    next(gen)
    assert model.training
    gen.close()
    assert not model.training


def test_a_non_finite_loss_is_an_error_naming_the_step_and_the_settings():
    with pytest.raises(DataError, match=r"diverged at step 2 \(loss nan\); lower the learning rates \(toy.lr\)"):
        drain(_fit(torch.nn.Linear(3, 1), [1.0, float("nan"), 1.0]))


def _mask_cams(mask):
    """A mask's classes as (confident) CAMs."""
    from napari_pcam.core.data.cams import CamMaps

    keys = np.array(sorted(set(np.unique(mask).tolist()) - {0, 255}), np.int64)
    high = np.stack([(mask == k).astype(np.float32) for k in keys])
    low = torch.nn.functional.interpolate(torch.from_numpy(high)[None], size=((mask.shape[0] + 3) // 4,
                                          (mask.shape[1] + 3) // 4), mode="bilinear")[0].numpy()
    return CamMaps(keys, high, low)


@pytest.mark.parametrize(("stage", "setting"),
                         [("pcam", "cam.lr_backbone"), ("irn", "irn.lr"), ("deeplab", "deeplab.lr")])
def test_every_stage_stops_when_its_loss_diverges(stage, setting, tiny_data, monkeypatch):
    from napari_pcam.core.config import AffinityConfig, DeepLabConfig, IrnConfig, RuntimeConfig
    from napari_pcam.core.stages import cam, irn, segmentation

    nan = float("nan")
    if stage == "pcam":
        monkeypatch.setattr(cam, "point_loss", lambda maps, *a, **k: maps.sum() * nan)
        cfg = CamConfig(backbone="resnet18", weights="none", crop_size=32, batch_size=2, epochs=1, min_steps=2)
        gen = cam.train_cam(tiny_data.images, tiny_data.points, cfg, runtime=RuntimeConfig(device="cpu"))
    elif stage == "irn":
        monkeypatch.setattr(irn, "irn_loss", lambda edge, *a: (edge.sum() * nan, {}))
        cfg = IrnConfig(backbone="resnet18", weights="none", radius=5, crop_size=32, batch_size=2, min_steps=2)
        gen = irn.train_irn(tiny_data.images, [_mask_cams(m) for m in tiny_data.masks], cfg, AffinityConfig())
    else:
        monkeypatch.setattr(segmentation, "_loss", lambda logits, batch, **k: (logits.sum() * nan, {}))
        cfg = DeepLabConfig(backbone="resnet18", weights="none", crop_size=32, batch_size=2, epochs=1, min_steps=2)
        gen = segmentation.train_deeplab(tiny_data.images, tiny_data.masks, 4, cfg, device="cpu")
    with pytest.raises(DataError, match=rf"diverged at step 1 \(loss nan\); lower the learning rates \({setting}"):
        drain(gen)


def test_the_record_round_trips_in_the_checkpoint_format(tmp_path):
    torch.manual_seed(0)
    model = CamNet(backbone="resnet18", weights="none", in_channels=2, num_classes=2).eval()
    trained = TrainedCam(model, CamConfig(backbone="resnet18", weights="none"), ("background", "a", "b"))
    trained.save(tmp_path / "pcam.pt")
    data = torch.load(tmp_path / "pcam.pt", weights_only=True)
    assert set(data) == {"format_version", "napari_pcam_version", "kind", "config", "class_names", "in_channels",
                         "state_dict", "extra"}
    assert (data["format_version"], data["kind"], data["class_names"], data["in_channels"], data["extra"]) == (
        1, "pcam", ["background", "a", "b"], 2, {})
    loaded = TrainedCam.load(tmp_path / "pcam.pt", ("background", "a", "b"))
    assert loaded.config == trained.config and loaded.class_names == trained.class_names
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.state_dict().items())


def test_weights_that_do_not_fit_are_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="the weights in x.pt do not fit a toy"):
        load_state(torch.nn.Linear(3, 1), {"weight": torch.zeros(2, 2)}, "x.pt", "a toy")


def test_a_step_budget_replaces_epochs_whatever_the_number_of_images():
    from napari_pcam.core.config import DeepLabConfig, IrnConfig

    for cls in (CamConfig, IrnConfig, DeepLabConfig):
        assert planned_steps(cls(epochs=5, min_steps=2), 40) == 40
        assert planned_steps(cls(epochs=5, min_steps=50), 40) == 50
        assert planned_steps(cls(epochs=5, min_steps=50, steps=7), 40) == 7
        assert planned_steps(cls(steps=7), 4000) == 7
        assert planned_steps(cls(), 0) == 1


def test_pcam_and_deeplab_train_for_their_step_budget(tiny_data, tiny_cam_config):
    import dataclasses

    from napari_pcam.core.config import DeepLabConfig, RuntimeConfig
    from napari_pcam.core.stages.cam import train_cam
    from napari_pcam.core.stages.segmentation import train_deeplab

    records = []
    config = dataclasses.replace(tiny_cam_config, epochs=20, steps=3)
    gen = train_cam(tiny_data.images, tiny_data.points, config, runtime=RuntimeConfig(device="cpu"))
    records.extend(gen)
    assert max(r.total for r in records if r.stage == "pcam") == 3
    seg = DeepLabConfig(backbone="resnet18", weights="none", crop_size=64, batch_size=2, epochs=50, steps=2)
    records = list(train_deeplab(tiny_data.images, [np.asarray(m, np.uint8) for m in tiny_data.masks],
                                 len(tiny_data.class_names), seg, device="cpu"))
    assert max(r.total for r in records) == 2
