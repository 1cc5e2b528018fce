"""A machine-readable stamp drawn into video frames: frame number and capture time.

The stamp is a strip of big black and white cells across the top of the luma plane, one
bit per cell, meant to survive lossy VP8/H.264 coding at low bitrates and 4:2:0 chroma
subsampling (the strip's chroma is neutral grey, so it carries nothing there)::

    marker (8 bits) | frame number (32) | capture time, µs since the epoch (64) | CRC-32 (32)

Cells are square, about ``width // STAMP_COLUMNS`` pixels wide (whole macroblocks from 640 px
up), laid out row-major from the top-left corner; both ends derive the layout from the frame
size alone, so a frame scaled by an exact factor still reads. The reader samples the inner
half of each cell, takes the black and white levels from the marker, and rejects the stamp
(returns ``None``) when a cell is ambiguous, the contrast is too low, the marker is wrong or
the CRC does not match, so a damaged stamp is reported as missing, never misread.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import av
import numpy as np

STAMP_COLUMNS = 40
"""Cells per row: 16 px cells at 640 wide, 32 px at 1280, 48 px at 1920, 8 px at 320."""

MARKER = 0b10110010
MARKER_BITS = 8
PAYLOAD_BITS = 32 + 64
CRC_BITS = 32
STAMP_BITS = MARKER_BITS + PAYLOAD_BITS + CRC_BITS

BLACK = 16
"""Luma of a 0 cell (video range, so no player or converter clips it)."""
WHITE = 235
"""Luma of a 1 cell."""
MIN_CELL = 4
"""Smallest cell, in pixels, for which a stamp is drawn at all (widths from 160)."""
MIN_CONTRAST = 64
"""Least difference between the marker's white and black levels for a readable stamp."""
MARGIN = 0.25
"""Every cell must sit this fraction of the black-white range away from the threshold."""

_MARKER_ARRAY = np.unpackbits(np.array([MARKER], dtype=np.uint8))
_MARKER_ONES = _MARKER_ARRAY.astype(bool)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a stamped frame carries."""

    frame_number: int
    """Counts frames from 0 at the source, modulo 2**32."""
    capture_time_us: int
    """Wall-clock capture time, ``time.time()`` in integer microseconds."""

    @property
    def capture_time(self) -> float:
        """The capture time in seconds since the epoch, comparable with ``time.time()``."""
        return self.capture_time_us / 1_000_000


@dataclass(frozen=True, slots=True)
class StampLayout:
    """Where the stamp's cells lie in a frame of a given size."""

    cell: int
    """Side of a square cell, in luma pixels (even, so chroma rows line up)."""
    columns: int
    rows: int

    @property
    def height(self) -> int:
        """Height of the strip, in luma pixels."""
        return self.rows * self.cell

    @property
    def width(self) -> int:
        """Width of the cells' area, in luma pixels (the rest of the strip stays black)."""
        return self.columns * self.cell


@functools.lru_cache(maxsize=64)
def stamp_layout(width: int, height: int) -> StampLayout | None:
    """The stamp layout for a frame of this size, or ``None`` when the frame is too small."""
    cell = width // STAMP_COLUMNS
    # Whole 16x16 macroblocks survive VP8's denoiser and skip decisions far better than
    # cells that split one; below 16 px, keep cells even so chroma rows line up.
    cell = cell & ~15 if cell >= 16 else cell & ~1
    if cell < MIN_CELL:
        return None
    rows = -(-STAMP_BITS // STAMP_COLUMNS)
    if rows * cell > height // 3:
        return None
    return StampLayout(cell=cell, columns=STAMP_COLUMNS, rows=rows)


def stamp_bits(stamp: Stamp) -> np.ndarray:
    """The stamp's bits, one ``uint8`` 0/1 per cell, marker first (``STAMP_BITS`` long)."""
    payload = (stamp.frame_number & 0xFFFF_FFFF).to_bytes(4, "big") + (
        stamp.capture_time_us & 0xFFFF_FFFF_FFFF_FFFF
    ).to_bytes(8, "big")
    data = bytes([MARKER]) + payload + zlib.crc32(payload).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


@functools.lru_cache(maxsize=64)
def _filler_bits(count: int) -> np.ndarray:
    return (np.arange(count) % 2).astype(np.uint8)


def draw_stamp(luma: np.ndarray, stamp: Stamp, layout: StampLayout) -> None:
    """Draw ``stamp`` into a luma plane (a 2-D ``uint8`` array, written in place).

    The caller keeps the chroma under the strip neutral (128).
    """
    cells = layout.rows * layout.columns
    bits = np.concatenate([stamp_bits(stamp), _filler_bits(cells - STAMP_BITS)])
    levels = np.where(bits.reshape(layout.rows, layout.columns), WHITE, BLACK).astype(np.uint8)
    _cells(luma, layout)[...] = levels[:, None, :, None]
    luma[: layout.height, layout.width :] = BLACK


def _cells(luma: np.ndarray, layout: StampLayout) -> np.ndarray:
    """A ``(rows, cell, columns, cell)`` view of the strip: ``[r, :, c, :]`` is one cell."""
    strip = luma[: layout.height, : layout.width]
    row_stride, col_stride = strip.strides
    return np.lib.stride_tricks.as_strided(
        strip,
        shape=(layout.rows, layout.cell, layout.columns, layout.cell),
        strides=(row_stride * layout.cell, row_stride, col_stride * layout.cell, col_stride),
        writeable=strip.flags.writeable,
    )


@functools.lru_cache(maxsize=64)
def _sample_points(layout: StampLayout) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices, ``(STAMP_BITS, n)`` each, of the pixels read in each cell.

    A grid of up to 4x4 over the inner half of each cell: edges ring after lossy coding, centres
    hold their level.
    """
    cell = layout.cell
    offsets = np.arange(cell // 4, cell - cell // 4, max(1, cell // 8))
    dy, dx = (d.ravel() for d in np.meshgrid(offsets, offsets, indexing="ij"))
    row, column = np.divmod(np.arange(STAMP_BITS), layout.columns)
    return row[:, None] * cell + dy, column[:, None] * cell + dx


def luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """A ``(height, width)`` ``uint8`` view of a frame's luma, without a copy when possible.

    Planar YUV frames (what the decoders produce) are read in place; anything else is
    converted to grey first.
    """
    if frame.format.name in _PLANAR_YUV_8BIT:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        return rows[: frame.height, : frame.width]
    return frame.to_ndarray(format="gray")


_PLANAR_YUV_8BIT = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "nv12"})


def read_stamp_luma(luma: np.ndarray) -> Stamp | None:
    """Read a stamp from a luma plane; ``None`` if there is none or it is damaged."""
    height, width = luma.shape
    layout = stamp_layout(width, height)
    if layout is None:
        return None
    rows, columns = _sample_points(layout)
    values = luma[rows, columns].mean(axis=1, dtype=np.float32)
    marker = values[:MARKER_BITS]
    white = float(marker[_MARKER_ONES].mean())
    black = float(marker[~_MARKER_ONES].mean())
    contrast = white - black
    if contrast < MIN_CONTRAST:
        return None
    threshold = (white + black) / 2
    if np.abs(values - threshold).min() < MARGIN * contrast:
        return None
    bits = (values > threshold).astype(np.uint8)
    if not np.array_equal(bits[:MARKER_BITS], _MARKER_ARRAY):
        return None
    data = np.packbits(bits[MARKER_BITS:]).tobytes()
    payload, crc = data[:12], data[12:]
    if zlib.crc32(payload) != int.from_bytes(crc, "big"):
        return None
    return Stamp(
        frame_number=int.from_bytes(payload[:4], "big"),
        capture_time_us=int.from_bytes(payload[4:], "big"),
    )


def read_stamp(frame: av.VideoFrame) -> Stamp | None:
    """Read the stamp of a (possibly decoded) frame; ``None`` if absent or damaged."""
    return read_stamp_luma(luma_plane(frame))
