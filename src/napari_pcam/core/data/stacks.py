"""Which axes of an image array are slices, rows, columns and channels: one rule for files and layers.

The rule, in order (documented in the README, "Stacks and channels"):

1. **Explicit axes win.** ``stack_axis`` / ``channel_axis`` (the CLI's ``--stack-axis`` / ``--channel-axis``,
   the viewer's "channel axis" field) name axes of the array as read (``tifffile.imread(path).shape``);
   they apply to every array of more than two axes. Of the other axes the last two are rows and columns,
   and a third one left over (before them) is the slice axis.
2. **Otherwise the file's axes metadata** (tifffile's series axes: ImageJ hyperstacks, OME-TIFF, tifffile's
   own ``{"axes": ...}``): ``Y`` and ``X`` are rows and columns, ``S`` (RGB samples) and ``C`` are channels,
   every other letter (``Z``, ``T``, ``I``, ...) is the slice axis. Axes of length 1 are dropped first.
3. **Without metadata** (tifffile reports only its generic ``Q`` / ``I`` letters, or none at all; files that
   tifffile itself wrote without an ``axes`` entry count as such, see ``readers.read_array``): a last
   axis of at most 4 entries is channels (``H x W x C``, too narrow to be an image's width); otherwise the
   last two axes are rows and columns and a leading third axis is the slice axis (``Z x H x W``).

At most one slice axis and one channel axis: anything else (e.g. a time series of z stacks) is an error
that names the file's axes and the options that resolve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

CHANNEL_LETTERS = "SC"  # tifffile: S = samples (RGB), C = channel
GENERIC_LETTERS = "QI"  # tifffile: Q = unknown (shaped files without axes), I = a plain sequence of pages
MAX_CHANNELS_LAST = 4  # a trailing axis this short is channels, never an image width


@dataclass(frozen=True)
class Layout:
    """Roles of the axes of one array.

    Attributes:
        drop: Axes of length 1 removed first; the other attributes count the axes left after that.
        rows: Axis of the rows (y).
        cols: Axis of the columns (x).
        stack: Axis of the slices, or None for one 2D image.
        channel: Axis of the channels, or None for one channel.
    """

    rows: int
    cols: int
    stack: int | None = None
    channel: int | None = None
    drop: tuple[int, ...] = ()

    def split(self, data: np.ndarray) -> np.ndarray:
        """``data`` rearranged as ``Z x H x W x C`` (Z = 1 and C = 1 where the array has no such axis).

        An array that is not a numpy array but rearranges like one (a dask array) stays what it is: the
        result is a view of it, read only where it is sliced.
        """
        data = data if is_array_like(data) else np.asarray(data)
        if self.drop:
            data = data.squeeze(axis=self.drop)
        order = [a for a in (self.stack, self.rows, self.cols, self.channel) if a is not None]
        if sorted(order) != list(range(data.ndim)):
            raise DataError(f"an array of shape {data.shape} does not fit the axes layout {self}.")
        data = np.moveaxis(data, order, range(len(order)))
        if self.stack is None:
            data = data[None]
        return data if self.channel is not None else data[..., None]


def is_array_like(data) -> bool:
    """True for a numpy array and for arrays that index, transpose and reshape like one without being read
    (dask arrays, memory maps): what :meth:`Layout.split` can rearrange without converting."""
    return all(hasattr(data, name) for name in ("shape", "dtype", "ndim", "transpose", "squeeze", "__getitem__"))


def layout(
    shape: tuple[int, ...],
    axes: str | None = None,
    *,
    stack_axis: int | None = None,
    channel_axis: int | None = None,
    source: str = "the image",
) -> Layout:
    """The roles of the axes of an array of ``shape`` (see the module docstring for the rule).

    Args:
        shape: Shape of the array as read.
        axes: tifffile's axes letters of the array (one per axis), or None when the format has none.
        stack_axis: Axis of the slices, given by the user (overrides the metadata).
        channel_axis: Axis of the channels, given by the user (overrides the metadata).
        source: What the array is (a file name), for the messages.

    Raises:
        DataError: an axis out of range, the same axis twice, or axes that the rule cannot assign.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2:
        raise DataError(f"{source} has shape {shape}; an image needs at least two axes (rows and columns).")
    if len(shape) > 2 and (stack_axis is not None or channel_axis is not None):
        return _explicit(shape, stack_axis, channel_axis, source)
    known = axes is not None and len(axes) == len(shape) and not set(axes.upper()) <= set(GENERIC_LETTERS + "YX")
    letters = axes.upper() if known else None
    drop = tuple(a for a, n in enumerate(shape)
                 if n == 1 and (letters[a] not in "YX" if letters else a < len(shape) - 2))
    kept = [a for a in range(len(shape)) if a not in drop]
    shape = tuple(shape[a] for a in kept)
    lay = _from_letters(shape, "".join(letters[a] for a in kept), source) if letters else _guess(shape, source)
    return Layout(lay.rows, lay.cols, lay.stack, lay.channel, drop)


def _explicit(shape, stack_axis, channel_axis, source) -> Layout:
    ndim = len(shape)
    named = {}
    for what, axis in (("--stack-axis", stack_axis), ("--channel-axis", channel_axis)):
        if axis is None:
            continue
        if not -ndim <= axis < ndim:
            raise DataError(f"{source} has {ndim} axes (shape {shape}); {what} {axis} does not exist "
                            f"(axes 0..{ndim - 1}).")
        named[what] = axis % ndim
    if len(set(named.values())) < len(named):
        raise DataError(f"--stack-axis and --channel-axis name the same axis {stack_axis} of {source}.")
    rest = [a for a in range(ndim) if a not in named.values()]
    stack, channel = named.get("--stack-axis"), named.get("--channel-axis")
    if len(rest) == 3 and stack is None:
        stack, rest = rest[0], rest[1:]
    if len(rest) != 2:
        raise DataError(f"{source} has {ndim} axes (shape {shape}); besides the named axes exactly two (rows, "
                        "columns) must remain: pass both --stack-axis and --channel-axis, or split the file.")
    return Layout(rest[0], rest[1], stack, channel)


def _from_letters(shape, axes, source) -> Layout:
    if "Y" not in axes or "X" not in axes:
        raise DataError(f"{source} has axes {axes} (shape {shape}) without Y and X; pass --stack-axis / "
                        "--channel-axis to say which axes are which.")
    channels = [a for a, c in enumerate(axes) if c in CHANNEL_LETTERS]
    slices = [a for a, c in enumerate(axes) if c not in CHANNEL_LETTERS + "YX"]
    if len(channels) > 1 or len(slices) > 1:
        what = "channel axis" if len(channels) > 1 else "slice axis"
        raise DataError(f"{source} has axes {axes} (shape {shape}): more than one {what}. napari-pcam takes 2D "
                        "images and 3D stacks (one slice axis, one channel axis); split the file, or pass "
                        "--stack-axis and --channel-axis for a file of at most 4 axes.")
    return Layout(axes.index("Y"), axes.index("X"), slices[0] if slices else None, channels[0] if channels else None)


def _guess(shape, source) -> Layout:
    ndim = len(shape)
    channels_last = shape[-1] <= MAX_CHANNELS_LAST
    if ndim == 2:
        return Layout(0, 1)
    if ndim == 3:
        return Layout(0, 1, channel=2) if channels_last else Layout(1, 2, stack=0)
    if ndim == 4 and channels_last:
        return Layout(1, 2, stack=0, channel=3)
    raise DataError(f"{source} has shape {shape} and no axes metadata saying which axes are slices and which "
                    "channels; pass --stack-axis and --channel-axis (axes counted from 0 in that shape).")
