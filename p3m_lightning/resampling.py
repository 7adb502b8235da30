"""``skimage.transform.resize`` as the official P3M-Net and GFM test scripts get it, in numpy.

The official scripts call ``resize(image, output_shape)`` with the defaults of the scikit-image
version their ``requirements.txt`` pins, and those defaults changed between versions:

- ``0.14`` (P3M-Net, ACM MM 2021, and the journal P3M-Nets pin 0.14.5): bilinear, border
  ``constant`` with value 0 (the first and last rows and columns blend with 0 when enlarging),
  no anti-aliasing when shrinking, arithmetic in float64, clipped to the input's range.
- ``0.17`` (GFM pins 0.17.2): bilinear, border ``reflect`` (mirror, the edge not repeated), a
  Gaussian anti-aliasing filter (sigma ``max(0, (in/out - 1) / 2)`` per axis) run in the input's
  dtype first (an 8-bit photo is truncated back to 8 bits after each axis), float32 input kept
  in float32, clipped to the input's range.

A modern scikit-image gives other mattes, so this module reproduces the pinned versions'
rules instead of calling the installed one (checked against the official scripts run with the
pinned versions: tests/test_official_procedures_trimap_free.py). Two details of the originals
are kept on purpose: the Gaussian kernel is built with the C library's ``exp`` (numpy's
vectorised ``exp`` differs in the last bit, which flips 8-bit truncations), and the bilinear
blend keeps scikit-image's order of operations. scikit-image estimates its scale matrix by
least squares, which leaves noise of about 1e-13 that this closed form does not have; it can
decide an exact ``== 255`` test in the original where a source coordinate is an integer (never
on the pinned vectors).
"""

from __future__ import annotations

import math

import numpy as np

VERSIONS = ("0.14", "0.17")
"""The scikit-image versions whose ``resize`` defaults are reproduced."""

__all__ = ["VERSIONS", "skimage_resize"]


def skimage_resize(
    image: np.ndarray, output_shape: tuple[int, int], version: str = "0.14"
) -> np.ndarray:
    """``skimage.transform.resize(image, output_shape)`` of scikit-image ``version``.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, uint8 (read as ``k / 255``), float32 or float64.
        output_shape: ``(height, width)``.
        version: ``"0.14"`` or ``"0.17"`` (``VERSIONS``).

    Returns:
        The resized image: float64, except float32 for a float32 input under ``"0.17"``.

    Raises:
        ValueError: an unknown version.
    """
    if version not in VERSIONS:
        raise ValueError(f"scikit-image version must be one of {VERSIONS}, got {version!r}")
    height, width = (int(s) for s in output_shape)
    if version == "0.17":
        in_shape = np.asarray(image.shape[:2], dtype=float)
        image = _gaussian_antialias(image, in_shape / np.asarray((height, width), dtype=float))
    x = _as_float(image)
    if version == "0.14":
        x = x.astype(np.float64, copy=False)
    mode = "constant" if version == "0.14" else "reflect"
    if x.ndim == 2:
        out = _bilinear(x, height, width, mode)
    else:
        out = np.dstack([_bilinear(x[..., c], height, width, mode) for c in range(x.shape[2])])
    return _clip_to_input_range(x, out, mode)


def _as_float(image: np.ndarray) -> np.ndarray:
    """scikit-image's ``img_as_float``: uint8 as ``k * (1 / 255)`` in float64."""
    if image.dtype == np.uint8:
        return np.multiply(image, 1.0 / 255, dtype=np.float64)
    if image.dtype == np.bool_:
        return image.astype(np.float64)
    return image


def _source_coordinates(
    n_in: int, n_out: int, dtype: type[np.floating]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixels and weights of each output pixel: coordinate ``f * i + f / 2 - 1 / 2`` with
    ``f = n_in / n_out``, computed in ``dtype`` as scikit-image's warp does."""
    f = float(n_in) / float(n_out)
    coords = np.asarray(f, dtype=dtype) * np.arange(n_out).astype(dtype) + np.asarray(
        f * 0.5 - 0.5, dtype=dtype
    )
    low = np.floor(coords).astype(np.int64)
    high = np.ceil(coords).astype(np.int64)
    return low, high, coords - low.astype(dtype)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected into ``[0, n)`` without repeating the edge (scikit-image's reflect)."""
    if n == 1:
        return np.zeros_like(index)
    period = n - 1
    folds, rest = np.divmod(np.abs(index), period)
    return np.where(folds % 2 == 1, period - rest, rest)


def _bilinear(channel: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """One 2-D channel, bilinear, in the channel's float dtype (scikit-image's ``_warp_fast``:
    ``top = (1-dc) TL + dc TR``, ``bottom = (1-dc) BL + dc BR``, ``(1-dr) top + dr bottom``)."""
    dtype = channel.dtype.type
    rows, cols = channel.shape
    r0, r1, dr = _source_coordinates(rows, height, dtype)
    c0, c1, dc = _source_coordinates(cols, width, dtype)
    if mode == "constant":
        # Row and column -1 and n read the constant 0.
        channel = np.pad(channel, 1)
        r0, r1 = np.clip(r0, -1, rows) + 1, np.clip(r1, -1, rows) + 1
        c0, c1 = np.clip(c0, -1, cols) + 1, np.clip(c1, -1, cols) + 1
    else:
        r0, r1, c0, c1 = _mirror(r0, rows), _mirror(r1, rows), _mirror(c0, cols), _mirror(c1, cols)
    one = dtype(1)
    # A source row's column blend is the same float whichever output row reads it: blend the
    # columns of the rows in use once, then the rows.
    used = np.unique(np.concatenate([r0, r1]))
    blended = (one - dc)[None, :] * channel[used][:, c0] + dc[None, :] * channel[used][:, c1]
    top = blended[np.searchsorted(used, r0)]
    bottom = blended[np.searchsorted(used, r1)]
    if dtype is np.float32:
        # The float32 warp keeps top and bottom in doubles for the last blend, then casts.
        w_top = (one - dr).astype(np.float64)[:, None]
        w_bottom = dr.astype(np.float64)[:, None]
        out = w_top * top.astype(np.float64) + w_bottom * bottom.astype(np.float64)
        return out.astype(np.float32)
    return (one - dr)[:, None] * top + dr[:, None] * bottom


def _clip_to_input_range(image: np.ndarray, out: np.ndarray, mode: str) -> np.ndarray:
    """Clip to the input's [min, max]; in constant mode a pixel equal to the constant 0 keeps
    it when 0 lies outside that range (scikit-image's rule)."""
    low, high = image.min(), image.max()
    keep_zero = mode == "constant" and not low <= 0 <= high
    zeros = out == 0 if keep_zero else None
    np.clip(out, low, high, out=out)
    if zeros is not None:
        out[zeros] = 0
    return out


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy's 1-D Gaussian correlation kernel, with the C library's ``exp``."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.array([math.exp(v) for v in -0.5 / (sigma * sigma) * x**2])
    return (weights / weights.sum())[::-1].copy()


def _gaussian_antialias(image: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """scikit-image 0.17's anti-aliasing: ``gaussian_filter(mode="mirror", truncate=4)`` with
    sigma ``max(0, (factor - 1) / 2)``, one axis at a time, each written in the input's dtype
    (8-bit results truncated toward zero before the next axis)."""
    # Imported here: scipy.ndimage takes about 0.2 s to import, and only this resize
    # (scikit-image 0.17's, the journal P3M-Nets' official procedure) needs it.
    import scipy.ndimage as ndi

    out = image
    for axis, factor in enumerate(factors):
        sigma = max(0.0, (float(factor) - 1.0) / 2.0)
        if sigma > 1e-15:
            kernel = _gaussian_kernel(sigma)
            out = ndi.correlate1d(out, kernel, axis, output=image.dtype, mode="mirror")
    return out
