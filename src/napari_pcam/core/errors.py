"""Exceptions with messages meant for users: what is wrong and how to fix it."""


class PcamError(Exception):
    """Base class of every error napari-pcam raises on purpose."""


class ConfigError(PcamError, ValueError):
    """A configuration value is out of range or unknown."""


class DataError(PcamError, ValueError):
    """Images, points or masks are inconsistent or unreadable."""


class OutputError(PcamError):
    """An output folder or file cannot be created or written."""


class CheckpointError(PcamError):
    """A checkpoint or model bundle cannot be used."""


class WeightsUnavailableError(PcamError):
    """Pretrained weights were requested but cannot be obtained."""


class MissingStageError(PcamError):
    """A stage was run before the stage it depends on."""
