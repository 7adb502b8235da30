"""Speed of the ten P3M-10k metrics on one 1080x1920 image, against the published Conn."""

from __future__ import annotations

import cv2
import numpy as np

from p3m_lightning.bench.model import median_seconds as _median_seconds
from p3m_lightning.data.synthetic import render_portrait, trimap_from_alpha
from p3m_lightning.metrics import compute_matting_metrics, connectivity_error

HEIGHT, WIDTH = 1080, 1920


def synthetic_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A portrait-like ``(pred, alpha, trimap)`` of 1080x1920 in the benchmark's dtypes.

    ``alpha`` is the synthetic generator's head-and-shoulders matte with hair strands (float64
    ``k / 255``), ``trimap`` is derived from it, and ``pred`` (float32) is ``alpha`` blurred and
    shifted by a few pixels, with low-frequency noise and a dozen spurious blobs, like an
    imperfect network output.
    """
    rng = np.random.default_rng(seed)
    alpha8 = render_portrait(HEIGHT, WIDTH, rng).alpha
    pred = cv2.GaussianBlur(alpha8.astype(np.float32) / 255, (0, 0), 2.0)
    shift = np.float32([[1, 0, -2], [0, 1, 3]])
    pred = cv2.warpAffine(pred, shift, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REPLICATE)
    noise = rng.standard_normal((HEIGHT, WIDTH)).astype(np.float32)
    pred += 0.3 * cv2.GaussianBlur(noise, (0, 0), 4.0)
    for _ in range(12):
        center = (int(rng.integers(WIDTH)), int(rng.integers(HEIGHT)))
        axes = (int(rng.integers(10, 60)), int(rng.integers(10, 60)))
        cv2.ellipse(pred, center, axes, 0, 0, 360, float(rng.uniform(0.3, 1.0)), -1)
    np.clip(pred, 0, 1, out=pred)
    return pred, alpha8 / 255.0, trimap_from_alpha(alpha8)


def published_connectivity_error(pred: np.ndarray, alpha: np.ndarray, step: float = 0.1) -> float:
    """Conn as the published P3M evaluation computes it, kept only as a speed baseline.

    The published algorithm: skimage labelling and ``regionprops`` per threshold, the largest
    component written through its coordinate list, a per-threshold l-map update, and a
    Euclidean distance transform of the complement of omega, computed and never used.
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.measure import label, regionprops

    h, w = pred.shape
    thresh_steps = np.arange(0, 1.1, step)
    l_map = -1 * np.ones((h, w), dtype=np.float32)
    for i in range(1, thresh_steps.size):
        pred_th = pred >= thresh_steps[i]
        alpha_th = alpha >= thresh_steps[i]
        regions = regionprops(label(pred_th & alpha_th, connectivity=1))
        sizes = np.array([region.area for region in regions])
        if len(sizes) == 0:
            continue
        coords = regions[int(np.argmax(sizes))].coords
        omega = np.zeros((h, w), dtype=np.float32)
        omega[coords[:, 0], coords[:, 1]] = 1
        flag = (l_map == -1) & (omega == 0)
        l_map[flag == 1] = thresh_steps[i - 1]
        dist_maps = distance_transform_edt(omega == 0)
        dist_maps = dist_maps / dist_maps.max()
    l_map[l_map == -1] = 1
    d_pred = pred - l_map
    d_alpha = alpha - l_map
    phi_pred = 1 - d_pred * (d_pred >= 0.15).astype(np.float32)
    phi_alpha = 1 - d_alpha * (d_alpha >= 0.15).astype(np.float32)
    return float(np.sum(np.abs(phi_pred - phi_alpha)) / 1000)


def run(repeats: int = 5) -> None:
    """Print the time of the ten metrics on one 1080x1920 image, and Conn against the published."""
    print(
        f"== Matting metrics, one {HEIGHT}x{WIDTH} image, {cv2.getNumThreads()} OpenCV threads =="
    )
    pred, alpha, trimap = synthetic_case()
    total = _median_seconds(lambda: compute_matting_metrics(pred, alpha, trimap), repeats)
    ours = _median_seconds(lambda: connectivity_error(pred, alpha), repeats)
    conn = connectivity_error(pred, alpha)
    published_conn = published_connectivity_error(pred, alpha)  # also the warm-up
    published = _median_seconds(
        lambda: published_connectivity_error(pred, alpha), max(1, repeats // 2), warmup=0
    )
    print(f"ten metrics:      {total * 1000:8.1f} ms/image (median of {repeats})")
    print(f"Conn:             {ours * 1000:8.1f} ms/image  value {conn:.9f}")
    print(f"Conn (published): {published * 1000:8.1f} ms/image  value {published_conn:.9f}")
    print(f"Conn speed-up over the published algorithm: {published / ours:.1f}x")


if __name__ == "__main__":
    run()
