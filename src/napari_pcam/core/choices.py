"""One mapping from a user's choices (CLI options, the Train widget's fields) to a :class:`PipelineConfig`.

The encoder is one choice for the whole chain: PCAM, IRNet and DeepLabv3+ get the same one, so IRNet's
``weights='same'`` (reuse the trained PCAM encoder) always fits. Weights apply to the networks that load
their own (PCAM, DeepLabv3+, and IRNet unless it reuses the PCAM's).
"""

from __future__ import annotations

import dataclasses

from .config import PipelineConfig
from .errors import ConfigError
from .models.encoders import check_encoder


def apply_choices(
    config: PipelineConfig,
    *,
    encoder: str | None = None,
    weights: str | None = None,
    alpha: float | None = None,
    cam_epochs: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    calibrate: bool | None = None,
) -> PipelineConfig:
    """``config`` with the given choices (None keeps a value); every value is checked.

    Raises:
        ConfigError: an unknown encoder (the message lists the registered ones) or an invalid value.
    """
    cam, irn, deeplab, runtime = config.cam, config.irn, config.deeplab, config.runtime
    if encoder is not None:
        check_encoder("encoder", encoder)
        cam = dataclasses.replace(cam, backbone=encoder)
        irn = dataclasses.replace(irn, backbone=encoder)
        deeplab = dataclasses.replace(deeplab, backbone=encoder)
    if weights is not None:
        cam = dataclasses.replace(cam, weights=weights)
        deeplab = dataclasses.replace(deeplab, weights=weights)
        if irn.weights != "same":
            irn = dataclasses.replace(irn, weights=weights)
    if alpha is not None:
        cam = dataclasses.replace(cam, alpha=alpha)
    if cam_epochs is not None:
        cam = dataclasses.replace(cam, epochs=cam_epochs)
    if device is not None:
        runtime = dataclasses.replace(runtime, device=device)
    if seed is not None:
        runtime = dataclasses.replace(runtime, seed=seed)
    calibration = config.calibration
    if calibrate is not None:
        calibration = dataclasses.replace(calibration, enabled=bool(calibrate))
    return dataclasses.replace(config, cam=cam, irn=irn, deeplab=deeplab, runtime=runtime, calibration=calibration)


def check_encoders(config: PipelineConfig, networks: tuple[str, ...] = ("cam", "irn", "deeplab")) -> None:
    """The encoders of these networks are registered, and IRNet's ``weights='same'`` has the PCAM's encoder.

    Args:
        config: The settings.
        networks: The config sections whose networks will be built (a run that stops early builds fewer).

    Raises:
        ConfigError: naming the field and the valid encoders, before any stage runs.
    """
    for section in networks:
        check_encoder(f"{section}.backbone", getattr(config, section).backbone)
    if "irn" in networks and config.irn.weights == "same" and config.irn.backbone != config.cam.backbone:
        raise ConfigError(
            f"irn.weights='same' reuses the PCAM encoder ({config.cam.backbone}), but irn.backbone is "
            f"{config.irn.backbone}; use the same encoder (--backbone sets all three) or other irn.weights."
        )
