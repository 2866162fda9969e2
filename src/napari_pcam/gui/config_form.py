"""A magicgui form over :class:`PipelineConfig` fields: widgets from a field table, values back to a config.

Each row names a config section and field, a label and widget options; the widget's initial value is
the preset's (the paper's defaults, or the light ``sample`` preset). Reading the form replaces those
fields in the preset with ``dataclasses.replace`` so every value is checked by core's ``__post_init__``.
Rows of the section ``choices`` are the user choices that span several stages (the encoder):
they go through core's :func:`~napari_pcam.core.choices.apply_choices`, the mapping the CLI uses too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox, Widget

from ..core.choices import apply_choices
from ..core.config import DEVICE_NAMES, PipelineConfig
from ..core.models.encoders import ENCODER_NAMES

_PROB = {"min": 0.0, "max": 1.0, "step": 0.01}
_LR = {"min": 1e-6, "max": 10.0, "step": 1e-4}
_CROP = {"min": 32, "max": 4096, "step": 16}

MAIN_FIELDS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("choices", "encoder", "encoder", {"choices": ENCODER_NAMES}),
    ("runtime", "device", "device", {"choices": DEVICE_NAMES}),
    ("cam", "epochs", "PCAM epochs", {"min": 1, "max": 100000}),
    ("irn", "epochs", "IRNet epochs", {"min": 1, "max": 100000}),
    ("deeplab", "epochs", "DeepLab epochs", {"min": 1, "max": 100000}),
    ("cam", "alpha", "alpha (point loss)", {"min": 0.0, "max": 1000.0, "step": 0.01}),
    ("cam", "background_map", "learn a background map", {}),
    ("calibration", "enabled", "thresholds from held-out clicks", {}),
    ("cam_inference", "bg_threshold", "CAM bg threshold", _PROB),
    ("affinity", "fg_threshold", "affinity fg threshold", _PROB),
    ("affinity", "bg_threshold", "affinity bg threshold", _PROB),
    ("random_walk", "beta", "beta", {"min": 0.1, "max": 1000.0, "step": 0.5}),
    ("random_walk", "bg_threshold", "random walk bg threshold", _PROB),
]

ADVANCED_FIELDS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("cam", "crop_size", "PCAM crop size", _CROP),
    ("cam", "batch_size", "PCAM batch size", {"min": 1, "max": 4096}),
    ("cam", "lr_backbone", "PCAM lr backbone", _LR),
    ("cam", "lr_classifier", "PCAM lr classifier", _LR),
    ("cam", "min_steps", "PCAM min steps", {"min": 0, "max": 10**7}),
    ("cam", "steps", "PCAM steps (0 = by epochs)", {"min": 0, "max": 10**7}),
    ("irn", "steps", "IRNet steps (0 = by epochs)", {"min": 0, "max": 10**7}),
    ("deeplab", "steps", "DeepLab steps (0 = by epochs)", {"min": 0, "max": 10**7}),
    ("cam", "detach_max", "detach max in point loss", {}),
    ("cam_inference", "restrict_to_labels", "CAMs of clicked classes only", {}),
    ("affinity", "crf", "dense CRF on mined labels", {}),
    ("irn", "crop_size", "IRNet crop size", _CROP),
    ("irn", "batch_size", "IRNet batch size", {"min": 1, "max": 4096}),
    ("deeplab", "crop_size", "DeepLab crop size", _CROP),
    ("deeplab", "batch_size", "DeepLab batch size", {"min": 1, "max": 4096}),
    ("deeplab", "crf", "dense CRF on final labels", {}),
    ("deeplab", "crf_check", "keep that CRF only if it keeps the clicks", {}),
    ("runtime", "seed", "seed", {"min": 0, "max": 2**31 - 1}),
    ("runtime", "amp", "mixed precision (CUDA)", {}),
    ("runtime", "num_workers", "data loader processes", {"min": 0, "max": 64}),
    ("runtime", "crf_workers", "CRF processes", {"min": 0, "max": 64}),
]


def _choices(config: PipelineConfig) -> dict[str, Any]:
    """The current values of the ``choices`` rows (as :func:`apply_choices` names them)."""
    return {"encoder": config.cam.backbone}


def _value(config: PipelineConfig, section: str, name: str) -> Any:
    return _choices(config)[name] if section == "choices" else getattr(getattr(config, section), name)


def _widget(value: Any, label: str, options: dict[str, Any]) -> Widget:
    if "choices" in options:
        choices = tuple(options["choices"])
        return ComboBox(value=value, label=label, choices=choices if value in choices else (*choices, value))
    if isinstance(value, bool):
        return CheckBox(value=value, label=label)
    if isinstance(value, int):
        return SpinBox(value=value, label=label, **options)
    return FloatSpinBox(value=value, label=label, **options)


class ConfigForm:
    """Widgets for a table of config fields.

    Args:
        fields: Rows ``(section, field, label, options)``.
        config: Config whose values fill the widgets.
    """

    def __init__(self, fields: list[tuple[str, str, str, dict[str, Any]]], config: PipelineConfig):
        self.fields = fields
        self.widgets: dict[tuple[str, str], Widget] = {}
        for section, name, label, options in fields:
            self.widgets[(section, name)] = _widget(_value(config, section, name), label, options)
        self.container = Container(widgets=list(self.widgets.values()))

    def __getitem__(self, key: str) -> Widget:
        section, name = key.split(".")
        return self.widgets[(section, name)]

    def load(self, config: PipelineConfig) -> None:
        """Show the values of ``config``."""
        for (section, name), widget in self.widgets.items():
            value = _value(config, section, name)
            if isinstance(widget, ComboBox) and value not in widget.choices:  # e.g. a weights file of a config
                widget.choices = (*widget.choices, value)
            widget.value = value

    def apply(self, config: PipelineConfig) -> PipelineConfig:
        """``config`` with the form's values (raises core's ConfigError on invalid combinations)."""
        changes: dict[str, dict[str, Any]] = {}
        for (section, name), widget in self.widgets.items():
            changes.setdefault(section, {})[name] = widget.value
        choices = changes.pop("choices", {})
        sections = {s: dataclasses.replace(getattr(config, s), **kv) for s, kv in changes.items()}
        return apply_choices(dataclasses.replace(config, **sections), **choices)
