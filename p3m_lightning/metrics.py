"""Matting metrics of the P3M-10k benchmark: SAD, MSE, MAD, their trimap variants, Grad, Conn.

The numbers are those of the published evaluation (``core/evaluate.py`` of the P3M release,
``docs/p3m-net.md`` §7), float quirks included, so results compare with the published
tables. The code is a fast rewrite of it: the published Conn spends most of its time in skimage
labelling and in a distance transform whose result it never uses, and Grad in scipy filters.
Here Conn labels with OpenCV inside shrinking bounding boxes, Grad filters with OpenCV, and the
per-pixel passes run on cache-sized row blocks.

Dtypes matter at the last bit: the benchmark feeds ``pred`` as float32 (the network output) and
``alpha`` as float64 (an 8-bit PNG divided by 255). :func:`compute_matting_metrics` computes in the
dtypes it is given, as the reference does; :class:`MattingMetrics` converts tensors to the
benchmark's dtypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torchmetrics import Metric

METRIC_NAMES: tuple[str, ...] = (
    "sad",
    "mse",
    "mad",
    "sad_trimap",
    "mse_trimap",
    "mad_trimap",
    "sad_fg",
    "sad_bg",
    "grad",
    "conn",
)
"""Keys returned by :func:`compute_matting_metrics` and :class:`MattingMetrics`, in spec order."""

FACE_METRIC_NAMES: tuple[str, ...] = ("sad_face", "mse_face", "mad_face")
"""Keys of :func:`face_region_errors`; :class:`MattingMetrics` adds them given face masks."""

_GRAD_SIGMA = 1.4
_GRAD_TRUNCATE = 4.0
_GRAD_RADIUS = int(_GRAD_TRUNCATE * _GRAD_SIGMA + 0.5)  # scipy's kernel radius, 6
_CONN_STEP = 0.1
_CONN_MARGIN = 0.15
# A float64 row block of this many pixels (256 KiB) and its companions stay in a core's L2.
_BLOCK_PIXELS = 1 << 15


def _prepare(
    pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Check the inputs; return them C-contiguous, pred and alpha as float32 or float64.

    OpenCV takes float32 and float64 only: float16 becomes float32 (exactly), wider floats
    float64.
    """
    arrays = {"pred": pred, "alpha": alpha}
    if trimap is not None:
        arrays["trimap"] = trimap
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    if len({a.shape for a in arrays.values()}) != 1 or any(a.ndim != 2 for a in arrays.values()):
        got = ", ".join(f"{name} {a.shape}" for name, a in arrays.items())
        raise ValueError(f"expected 2-D arrays of one shape (H, W), got {got}")
    if arrays["pred"].size == 0:
        raise ValueError(f"expected a non-empty image, got shape {arrays['pred'].shape}")
    for name in ("pred", "alpha"):
        a = arrays[name]
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{name} must be floating point in [0, 1], got dtype {a.dtype}")
        if a.dtype not in (np.float32, np.float64):
            arrays[name] = a.astype(np.float32 if a.itemsize < 4 else np.float64)
    return tuple(arrays.values())


def _block_rows(width: int, halo: int = 0) -> int:
    # Blocks at least 8 halos tall, so that halo rows add at most a quarter to the work.
    return max(1, _BLOCK_PIXELS // width, 8 * halo)


def _blocks(height: int, width: int, halo: int = 0) -> list[tuple[slice, slice, slice]]:
    """Row blocks ``(rows, with_halo, inner)`` of about ``_BLOCK_PIXELS`` pixels.

    Streaming whole float64 images through a dozen operations is memory-bound; the same work on
    blocks that stay in the CPU cache runs several times faster. ``with_halo`` widens ``rows`` by
    ``halo`` on each side (clipped to the image) and ``inner`` locates ``rows`` inside it.
    """
    step = _block_rows(width, halo)
    blocks = []
    for start in range(0, height, step):
        stop = min(start + step, height)
        lo, hi = max(start - halo, 0), min(stop + halo, height)
        blocks.append((slice(start, stop), slice(lo, hi), slice(start - lo, stop - lo)))
    return blocks


def _region_errors(
    pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray | None
) -> dict[str, float]:
    """SAD, MSE and MAD of the whole image and, given a trimap, the trimap and FG/BG variants.

    Differences are taken in the dtype of ``pred - alpha`` (float64 for the benchmark's float32
    prediction and float64 alpha), as in the reference, and summed in float64.
    """
    height, width = pred.shape
    dtype = np.promote_types(pred.dtype, alpha.dtype)
    if trimap is not None:
        fg, bg = trimap == 255, trimap == 0
    pred_buf = np.empty((_block_rows(width), width), dtype)
    alpha_buf = np.empty_like(pred_buf)
    # Sums of |d| and d^2; of |d| on FG and BG; of |d| and d^2 with pred forced to the trimap.
    totals = np.zeros(6)
    for rows, _, _ in _blocks(height, width):
        p = pred_buf[: rows.stop - rows.start]
        np.copyto(p, pred[rows])
        a = alpha[rows]
        if a.dtype != dtype:
            a = alpha_buf[: len(p)]
            np.copyto(a, alpha[rows])
        totals[:2] += cv2.norm(p, a, cv2.NORM_L1), cv2.norm(p, a, cv2.NORM_L2SQR)
        if trimap is None:
            continue
        f, b = fg[rows], bg[rows]
        totals[2] += cv2.norm(p, a, cv2.NORM_L1, mask=f.view(np.uint8))
        totals[3] += cv2.norm(p, a, cv2.NORM_L1, mask=b.view(np.uint8))
        np.copyto(p, 1.0, where=f)
        np.copyto(p, 0.0, where=b)
        totals[4:] += cv2.norm(p, a, cv2.NORM_L1), cv2.norm(p, a, cv2.NORM_L2SQR)
    l1, l2 = totals[:2].tolist()
    out = {"sad": l1 / 1000, "mse": l2 / pred.size, "mad": l1 / pred.size}
    if trimap is not None:
        fg_l1, bg_l1, forced_l1, forced_l2 = totals[2:].tolist()
        # With no 128 pixels the reference divides by the pixels that are neither 0 nor 255; if
        # there are none either it would divide by zero, so the divisor is clamped to 1.
        pixels = np.count_nonzero(trimap == 128) or max(
            pred.size - np.count_nonzero(fg) - np.count_nonzero(bg), 1
        )
        out |= {
            "sad_trimap": forced_l1 / 1000,
            "mse_trimap": forced_l2 / pixels,
            "mad_trimap": forced_l1 / pixels,
            "sad_fg": fg_l1 / 1000,
            "sad_bg": bg_l1 / 1000,
        }
    return out


def whole_image_errors(pred: np.ndarray, alpha: np.ndarray) -> dict[str, float]:
    """SAD (sum |pred - alpha| / 1000), MSE and MAD over the whole image.

    These are the headline numbers of the published tables.

    Args:
        pred: predicted alpha, (H, W) float in [0, 1].
        alpha: ground-truth alpha, (H, W) float in [0, 1].

    Returns:
        ``{"sad", "mse", "mad"}``.
    """
    return _region_errors(*_prepare(pred, alpha), None)


def trimap_errors(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """SAD, MSE and MAD after forcing the prediction to the trimap's known regions.

    ``pred`` is set to 1 where the trimap is 255 and to 0 where it is 0. SAD is the sum of
    absolute errors over the whole image / 1000; MSE and MAD are sums over the whole image
    divided by the number of unknown (128) pixels or, if there are none, by the number of pixels
    that are neither 0 nor 255 (the published fallback). If that is 0 too (a trimap of only 0 and
    255) the published code divides by zero; here the divisor is clamped to 1, so MSE and MAD are
    the plain sums: finite, 0 for a perfect prediction, and not hiding errors.

    Args:
        pred: predicted alpha, (H, W) float in [0, 1].
        alpha: ground-truth alpha, (H, W) float in [0, 1].
        trimap: (H, W) with values 0/128/255, normally uint8.

    Returns:
        ``{"sad_trimap", "mse_trimap", "mad_trimap"}``.
    """
    out = _region_errors(*_prepare(pred, alpha, trimap))
    return {name: out[name] for name in ("sad_trimap", "mse_trimap", "mad_trimap")}


def fg_bg_errors(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """SAD / 1000 of the (unforced) prediction where the trimap is 255 (FG) and 0 (BG).

    Args:
        pred: predicted alpha, (H, W) float in [0, 1].
        alpha: ground-truth alpha, (H, W) float in [0, 1].
        trimap: (H, W) with values 0/128/255, normally uint8.

    Returns:
        ``{"sad_fg", "sad_bg"}``.
    """
    out = _region_errors(*_prepare(pred, alpha, trimap))
    return {name: out[name] for name in ("sad_fg", "sad_bg")}


def face_region_errors(
    pred: np.ndarray, alpha: np.ndarray, face_mask: np.ndarray
) -> dict[str, float] | None:
    """SAD, MSE and MAD of the (unforced) prediction inside the face mask.

    These are the privacy-region errors of the journal P3M-Net evaluation on P3M-500-P, whose
    ``facemask/*.png`` mark the obfuscated faces. SAD is the sum of absolute errors on face
    pixels / 1000; MSE and MAD are the sums of squared and absolute errors on face pixels divided
    by the number of face pixels, so they are per-pixel errors of the face region alone, as the
    trimap variants are of the unknown region.

    Args:
        pred: predicted alpha, (H, W) float in [0, 1].
        alpha: ground-truth alpha, (H, W) float in [0, 1].
        face_mask: (H, W) uint8 or bool, nonzero on faces (as P3M-10k's ``facemask/*.png``).

    Returns:
        ``{"sad_face", "mse_face", "mad_face"}``, or None when the mask marks no pixel (the
        per-pixel errors of an empty region are undefined, so such an image has no face score).

    Raises:
        ValueError: if the arrays are not 2-D of one shape, or pred or alpha is not floating.
    """
    pred, alpha = _prepare(pred, alpha)
    if face_mask.shape != pred.shape:
        raise ValueError(f"face_mask has shape {face_mask.shape}, pred {pred.shape}")
    face = face_mask != 0
    pixels = np.count_nonzero(face)
    if pixels == 0:
        return None
    # The differences in the dtype of pred - alpha (float64 for the benchmark's inputs), summed
    # in float64, as the whole-image errors.
    diff = (pred[face] - alpha[face]).astype(np.float64, copy=False)
    l1 = float(np.abs(diff).sum())
    l2 = float(np.square(diff).sum())
    return {"sad_face": l1 / 1000, "mse_face": l2 / pixels, "mad_face": l1 / pixels}


def _scipy_gaussian_kernel(order: int) -> np.ndarray:
    """``scipy.ndimage``'s 1-D Gaussian of ``order`` 0 or 1 (sigma 1.4, truncate 4), reversed.

    Built with scipy's float operations, so the weights agree to the bit; scipy convolves with
    the kernel and OpenCV correlates, hence the reversal.
    """
    sigma2 = _GRAD_SIGMA * _GRAD_SIGMA
    x = np.arange(-_GRAD_RADIUS, _GRAD_RADIUS + 1)
    phi = np.exp(-0.5 / sigma2 * x**2)
    phi = phi / phi.sum()
    if order == 1:
        phi = x * (-1 / sigma2) * phi
    return phi[::-1].copy()


# (kernel along axis 0, kernel along axis 1) of the two derivatives, as OpenCV 2-D kernels.
_GRAD_KERNELS = (
    (_scipy_gaussian_kernel(1)[:, None], _scipy_gaussian_kernel(0)[None, :]),
    (_scipy_gaussian_kernel(0)[:, None], _scipy_gaussian_kernel(1)[None, :]),
)


class _GradientMagnitude:
    """float32 ``sqrt(gx**2 + gy**2)`` of ``gaussian_filter(x, 1.4, order, output=np.float32)``.

    scipy filters axis 0, then axis 1; each pass sums in float64 and stores into the float32
    output, so the image between the passes is rounded to float32 too. The same passes run here
    in OpenCV, summing in float64 and rounding at the same points (its ``BORDER_REFLECT`` is
    scipy's ``reflect``), block by block with reused buffers: several times faster than scipy.
    """

    def __init__(self, width: int) -> None:
        rows = _block_rows(width, _GRAD_RADIUS)
        self._src = np.empty((rows + 2 * _GRAD_RADIUS, width))
        self._col = np.empty_like(self._src)
        self._mid = np.empty((rows, width), np.float32)
        self._row = np.empty((rows, width))
        self._squares = (np.empty_like(self._mid), np.empty_like(self._mid))

    def __call__(self, x: np.ndarray, inner: slice) -> np.ndarray:
        """The magnitude on rows ``inner`` of ``x``, image rows with their halo (a view)."""
        n = inner.stop - inner.start
        src = self._src[: len(x)]
        np.copyto(src, x)  # filter2D gives float64 output only for float64 input
        squares = [s[:n] for s in self._squares]
        for (axis0, axis1), square in zip(_GRAD_KERNELS, squares, strict=True):
            col = cv2.filter2D(
                src, cv2.CV_64F, axis0, dst=self._col[: len(x)], borderType=cv2.BORDER_REFLECT
            )
            # scipy stores the axis-0 pass in its float32 output: round it, keep it in float64.
            mid = col[inner]
            np.copyto(self._mid[:n], mid)
            np.copyto(mid, self._mid[:n])
            row = cv2.filter2D(
                mid, cv2.CV_64F, axis1, dst=self._row[:n], borderType=cv2.BORDER_REFLECT
            )
            np.copyto(square, row)
            np.multiply(square, square, out=square)
        magnitude = np.add(*squares, out=squares[0])
        return np.sqrt(magnitude, out=magnitude)


def grad_error(pred: np.ndarray, alpha: np.ndarray) -> float:
    """Gradient error: sum of (|grad pred| - |grad alpha|)^2 / 10, computed in float32.

    The gradients are first-order Gaussian derivatives, as
    ``scipy.ndimage.gaussian_filter(x, 1.4, order=(1, 0) / (0, 1), output=np.float32)``
    (reflect border, truncate 4).

    Args:
        pred: predicted alpha, (H, W) float in [0, 1].
        alpha: ground-truth alpha, (H, W) float in [0, 1].

    Returns:
        The gradient error.
    """
    pred, alpha = _prepare(pred, alpha)
    height, width = pred.shape
    err = np.empty(pred.shape, np.float32)
    pred_mag, alpha_mag = _GradientMagnitude(width), _GradientMagnitude(width)
    for rows, with_halo, inner in _blocks(height, width, _GRAD_RADIUS):
        e = err[rows]
        np.subtract(pred_mag(pred[with_halo], inner), alpha_mag(alpha[with_halo], inner), out=e)
        np.multiply(e, e, out=e)
    # One float32 np.sum over the whole error map, as in the reference: the same rounding.
    return float(np.sum(err) / 10)


def _at_least(x: np.ndarray, t: np.float64) -> np.floating:
    """A threshold ``u`` of ``x``'s dtype such that ``x >= u`` iff ``x >= t`` in float64.

    The reference compares the float32 prediction with a float64 threshold, which NumPy 2
    evaluates in float64. The smallest float32 not below ``t`` gives the same mask without
    upcasting the image.
    """
    u = x.dtype.type(t)
    return np.nextafter(u, x.dtype.type(np.inf)) if u < t else u


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a non-empty boolean ``mask``.

    Ties go to the component met first in raster order, as in the reference (``argmax`` over
    skimage's ``regionprops``): OpenCV numbers components, like skimage, in the raster order of
    their first pixels, and ``argmax`` returns the first maximum.
    """
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    if n == 2:
        return mask
    areas = np.bincount(labels.ravel(), minlength=n)
    return labels == 1 + int(np.argmax(areas[1:]))


def connectivity_error(pred: np.ndarray, alpha: np.ndarray) -> float:
    """Connectivity error (step 0.1) of the published evaluation, divided by 1000.

    With ``t = numpy.arange(0, 1.1, 0.1)`` (float artefacts such as 0.6000000000000001 kept:
    they decide ties with 8-bit alphas), omega_i is the largest 4-connected component of
    ``(pred >= t_i) & (alpha >= t_i)``. A pixel's level ``l`` is ``t_(i-1)`` for the first i whose
    omega_i misses it, and 1 if none does, including when the loop stops at an empty
    intersection (the published code skips it, and with it every later threshold). Then
    ``d = x - l``, ``phi(x) = 1 - d [d >= 0.15]`` and Conn = sum |phi(pred) - phi(alpha)| / 1000.
    The published code also computes a distance transform per threshold that it never uses; it
    is left out, which changes nothing.

    Args:
        pred: predicted alpha, (H, W) float in [0, 1].
        alpha: ground-truth alpha, (H, W) float in [0, 1].

    Returns:
        The connectivity error.
    """
    pred, alpha = _prepare(pred, alpha)
    thresholds = np.arange(0, 1.1, _CONN_STEP)
    # run = how many consecutive omegas, from i = 1, contain the pixel; its level is t_(run).
    run = np.zeros(pred.shape, dtype=np.uint8)
    # The intersections shrink as t grows, so each is searched and labelled only inside the
    # bounding box (x, y, w, h) of the previous one; ``alive`` (inside every omega so far) is kept
    # for that box only, as it is empty outside.
    x, y, w, h = 0, 0, pred.shape[1], pred.shape[0]
    alive = np.ones(pred.shape, dtype=bool)
    last = 0
    for i in range(1, thresholds.size):
        box = np.s_[y : y + h, x : x + w]
        mask = pred[box] >= _at_least(pred, thresholds[i])
        mask &= alpha[box] >= _at_least(alpha, thresholds[i])
        dx, dy, w, h = cv2.boundingRect(mask.view(np.uint8))
        if w == 0:
            # Every later intersection is a subset of this empty one.
            break
        inner = np.s_[dy : dy + h, dx : dx + w]
        alive = alive[inner] & _largest_component(mask[inner])
        x, y = x + dx, y + dy
        run[y : y + h, x : x + w] += alive
        last = i
    # The reference's level map is float32, so t_(i-1) is rounded to float32 before use.
    levels = np.ones(256, dtype=np.float32)
    levels[:last] = thresholds[:last]
    return _phi_error(pred, alpha, run, levels) / 1000


def _phi_error(pred: np.ndarray, alpha: np.ndarray, run: np.ndarray, levels: np.ndarray) -> float:
    """sum |phi(pred) - phi(alpha)| with the level map ``levels[run]``.

    ``phi(x) = 1 - d [d >= 0.15]``, ``d = x - l``, is evaluated in the dtype the reference gets
    (float32 for a float32 prediction, float64 for a float64 alpha): an OpenCV ``THRESH_TOZERO``
    keeps ``d`` strictly above the value just below 0.15 in that dtype.
    """
    height, width = pred.shape
    per_input = [
        (x, levels.astype(x.dtype), float(np.nextafter(x.dtype.type(_CONN_MARGIN), -np.inf)))
        for x in (pred, alpha)
    ]
    bufs = [np.empty((_block_rows(width), width), x.dtype) for x, _, _ in per_input]
    pred_phi64 = np.empty((_block_rows(width), width))
    total = 0.0
    for rows, _, _ in _blocks(height, width):
        phis = []
        for (x, lut, below), buf in zip(per_input, bufs, strict=True):
            phi = cv2.LUT(run[rows], lut, dst=buf[: rows.stop - rows.start])
            phi = cv2.subtract(x[rows], phi, dst=phi)
            phi = cv2.threshold(phi, below, 0.0, cv2.THRESH_TOZERO, dst=phi)[1]
            phis.append(np.subtract(1, phi, out=phi))
        # |phi(pred) - phi(alpha)| is taken in float64, as numpy promotes it.
        p = pred_phi64[: len(phis[0])]
        np.copyto(p, phis[0])
        total += cv2.norm(p, phis[1].astype(np.float64, copy=False), cv2.NORM_L1)
    return total


def compute_matting_metrics(
    pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray
) -> dict[str, float]:
    """The ten P3M-10k metrics of one image.

    It computes in the dtypes given; the benchmark's are float32 ``pred`` and float64
    ``alpha``.

    Args:
        pred: predicted alpha, (H, W) float in [0, 1].
        alpha: ground-truth alpha, (H, W) float in [0, 1].
        trimap: (H, W) with values 0/128/255, normally uint8.

    Returns:
        The keys of :data:`METRIC_NAMES`: ``sad, mse, mad`` (whole image, see
        :func:`whole_image_errors`), ``sad_trimap, mse_trimap, mad_trimap``
        (:func:`trimap_errors`), ``sad_fg, sad_bg`` (:func:`fg_bg_errors`), ``grad``
        (:func:`grad_error`) and ``conn`` (:func:`connectivity_error`).

    Raises:
        ValueError: if the arrays are not 2-D of one shape, or pred or alpha is not floating.
    """
    pred, alpha, trimap = _prepare(pred, alpha, trimap)
    out = _region_errors(pred, alpha, trimap)
    out["grad"] = grad_error(pred, alpha)
    out["conn"] = connectivity_error(pred, alpha)
    return {name: float(out[name]) for name in METRIC_NAMES}


def _images(x: torch.Tensor | Sequence[torch.Tensor], name: str) -> list[torch.Tensor]:
    """One image, a batch, or a list of images of any sizes, as a list of (H, W) tensors."""
    if isinstance(x, torch.Tensor):
        if x.ndim == 4 and x.shape[1] == 1:
            return list(x[:, 0])
        if x.ndim == 3:
            return list(x)
        if x.ndim == 2:
            return [x]
        raise ValueError(
            f"{name}: expected (B, 1, H, W), (B, H, W) or (H, W), got {tuple(x.shape)}"
        )
    images = []
    for item in x:
        if item.ndim < 2 or any(s != 1 for s in item.shape[:-2]):
            raise ValueError(f"{name}: list items must be single images, got {tuple(item.shape)}")
        images.append(item.reshape(item.shape[-2:]))
    return images


def _alpha_array(alpha: torch.Tensor) -> np.ndarray:
    """Ground truth as the benchmark's float64 ``k / 255``.

    Integer alphas are 0-255 and divided by 255 in float64. An alpha that a data loader divided
    by 255 in float32 (or float16) is snapped back to the exact ``k / 255``: Conn's thresholds
    tell them apart (153/255 is below ``numpy.arange``'s 0.6000000000000001, float32's 0.6 is
    above it). Other float alphas are used as they are.
    """
    a = alpha.detach().cpu()
    if not a.is_floating_point():
        return a.numpy().astype(np.float64) / 255.0
    if a.dtype == torch.float64:
        return a.numpy()
    scaled = a.float().numpy() * np.float32(255)
    levels = np.rint(scaled)
    # float32(k / 255) * 255 lands within 3e-5 of k.
    if np.abs(scaled - levels).max() < 1e-3:
        return levels.astype(np.float64) / 255.0
    return a.double().numpy()


def _face_masks(
    face_mask: torch.Tensor | Sequence[torch.Tensor | None] | None, count: int
) -> list[torch.Tensor | None]:
    """Face masks laid out like ``pred`` as a list with None for images without one."""
    if face_mask is None:
        return [None] * count
    if isinstance(face_mask, torch.Tensor):
        masks: list[torch.Tensor | None] = list(_images(face_mask, "face_mask"))
    else:
        masks = [None if m is None else _images(m, "face_mask")[0] for m in face_mask]
    if len(masks) != count:
        raise ValueError(f"face_mask holds {len(masks)} images, pred {count}")
    return masks


def _mask_array(mask: torch.Tensor) -> np.ndarray:
    """A face mask as a bool array: nonzero (for floats: at least 0.5 after scaling) is face."""
    m = mask.detach().cpu()
    if m.is_floating_point():
        # Float masks come as 0/1 or, read from a PNG without scaling, 0/255.
        scale = 255.0 if m.numel() and float(m.max()) > 1 else 1.0
        return (m >= 0.5 * scale).numpy()
    return (m != 0).numpy()


def _trimap_array(trimap: torch.Tensor) -> np.ndarray:
    t = trimap.detach().cpu()
    if t.is_floating_point():
        t = t.round()
    return t.to(torch.uint8).numpy()


class MattingMetrics(Metric):
    """The ten P3M-10k metrics (:data:`METRIC_NAMES`), averaged over images.

    Each image is scored at its own resolution with :func:`compute_matting_metrics` on the CPU
    (pred as float32, alpha as float64 ``k / 255``, as the benchmark). The states are per-metric
    sums and an image count, all reduced across processes by summing, so the result is the mean
    over every image of every process, never a mean of per-process means. The sums are float64
    (devices without float64, such as Apple MPS, cannot hold them).

    Given face masks, it also averages :data:`FACE_METRIC_NAMES` (:func:`face_region_errors`)
    over the images whose mask marks at least one pixel, with their own sums and image count
    (summed across processes as well). ``compute`` returns the face keys only when such an image
    was seen anywhere: a set without face masks has no face metrics, not zeros.

    Example::

        metric = MattingMetrics()
        metric.update(pred, alpha, trimap)  # (H, W) tensors, (B, 1, H, W) batches or lists
        metric.update(pred, alpha, trimap, face_mask)  # also scores the face region
        sad = metric.compute()["sad"]
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[dict[str, Any]] = []
        """The values of every image this process scored since the last ``reset``, in order
        (not reduced across processes: each process keeps its own images)."""
        for name in METRIC_NAMES:
            zero = torch.tensor(0.0, dtype=torch.float64)
            self.add_state(f"{name}_sum", default=zero, dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.tensor(0), dist_reduce_fx="sum")
        for name in FACE_METRIC_NAMES:
            zero = torch.tensor(0.0, dtype=torch.float64)
            self.add_state(f"{name}_sum", default=zero, dist_reduce_fx="sum")
        self.add_state("num_face_images", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(
        self,
        pred: torch.Tensor | Sequence[torch.Tensor],
        alpha: torch.Tensor | Sequence[torch.Tensor],
        trimap: torch.Tensor | Sequence[torch.Tensor],
        face_mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        """Score images and add them to the running sums (and each image's values, with its
        name if given, to ``rows``).

        Args:
            pred: predicted alpha in [0, 1]: one (H, W) image, a (B, 1, H, W) or (B, H, W)
                batch, or a list of images of different sizes.
            alpha: ground truth in [0, 1] (float) or 0-255 (uint8), laid out like ``pred``.
            trimap: 0/128/255 trimap (uint8 or float), laid out like ``pred``.
            face_mask: optional face masks laid out like ``pred`` (a list may hold None for
                images without one): nonzero on faces for integer masks, at least half of the
                maximum scale (0.5 of 1 or 127.5 of 255) for float masks.
            names: optional image names laid out like ``pred``, kept in ``rows``.

        Raises:
            ValueError: if the inputs hold different numbers of images or an image's shapes
                differ.
        """
        preds, alphas, trimaps = (
            _images(x, n) for x, n in ((pred, "pred"), (alpha, "alpha"), (trimap, "trimap"))
        )
        if not len(preds) == len(alphas) == len(trimaps):
            raise ValueError(
                f"pred, alpha and trimap hold {len(preds)}, {len(alphas)} and {len(trimaps)} images"
            )
        masks = _face_masks(face_mask, len(preds))
        image_names = [None] * len(preds) if names is None else list(names)
        if len(image_names) != len(preds):
            raise ValueError(f"{len(image_names)} names for {len(preds)} images")
        faces = 0
        for p, a, t, m, n in zip(preds, alphas, trimaps, masks, image_names, strict=True):
            p_np, a_np = p.detach().to("cpu", torch.float32).numpy(), _alpha_array(a)
            values = compute_matting_metrics(p_np, a_np, _trimap_array(t))
            face_values = None if m is None else face_region_errors(p_np, a_np, _mask_array(m))
            if face_values is not None:
                values |= face_values
                faces += 1
            for name, value in values.items():
                state = getattr(self, f"{name}_sum")
                setattr(self, f"{name}_sum", state + value)
            self.rows.append(values if n is None else {"name": n, **values})
        # Out of place: states reset under inference mode must still update outside it.
        self.num_images = self.num_images + len(preds)
        self.num_face_images = self.num_face_images + faces

    def reset(self) -> None:
        """Zero the sums and forget the per-image rows."""
        super().reset()
        self.rows = []

    def compute(self) -> dict[str, torch.Tensor]:
        """Mean of each metric over all images seen (NaN before any update).

        The face keys are present only if an image with a non-empty face mask was seen; they
        are means over those images.
        """
        out = {name: getattr(self, f"{name}_sum") / self.num_images for name in METRIC_NAMES}
        if int(self.num_face_images) > 0:
            for name in FACE_METRIC_NAMES:
                out[name] = getattr(self, f"{name}_sum") / self.num_face_images
        return out
