"""The published test script's steps for sample photos, emulated for ``make bench``.

The published pipeline is not installed here; this script repeats what its sample-photo test
does, step by step, on this project's P3M-Net (the same computation): it imports torchvision
(for ``transforms.Normalize``) and scikit-image; reads the photo with Pillow; resizes with
``skimage.transform.resize`` in float64; runs the whole network (all six outputs) in NCHW
with BatchNorm unfolded, once for RESIZE and twice for HYBRID; fuses in float64 numpy; and
writes the alpha and the colour cut-out with OpenCV. Only the timing is of interest.

Usage: ``python -m p3m_lightning.bench.reference CKPT PHOTO OUTPUT_DIR resize|hybrid``
"""

from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np
import torch
from PIL import Image
from skimage.transform import resize
from torchvision import transforms

from p3m_lightning.models.checkpoint import load_model

MAX_SIZE = 1600
SHORTER_SIDE_LIMIT = 1080


def _network_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    rh, rw = int(h * ratio), int(w * ratio)
    return min(MAX_SIZE, rh - rh % 32), min(MAX_SIZE, rw - rw % 32)


def _inference_once(model: torch.nn.Module, scaled: np.ndarray):
    x = torch.from_numpy(scaled.astype(np.float32)).permute(2, 0, 1) / 255.0
    x = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])(x)
    out = model(x.unsqueeze(0))  # every output, as the published network returns them
    trimap = np.argmax(out["global_logits"].numpy(), axis=1)[0].astype(np.int64)
    trimap[trimap == 1] = 128
    trimap[trimap == 2] = 255
    return trimap.astype(np.uint8), out["local"].numpy()[0, 0], out["fusion"].numpy()[0, 0]


def _inference_img(model: torch.nn.Module, img: np.ndarray, strategy: str) -> np.ndarray:
    h, w = img.shape[:2]
    if strategy == "hybrid":
        trimap, _, _ = _inference_once(model, resize(img, _network_size(h, w, 0.5)) * 255.0)
        trimap = resize(trimap, (h, w)) * 255.0
        _, local, _ = _inference_once(model, resize(img, _network_size(h, w, 1.0)) * 255.0)
        local = resize(local, (h, w))
        weight = np.ones(trimap.shape)
        weight[trimap == 255] = 0
        weight[trimap == 0] = 0
        return trimap * (1.0 - weight) / 255 + local * weight
    _, _, fusion = _inference_once(model, resize(img, _network_size(h, w, 0.5)) * 255.0)
    return resize(fusion, (h, w))


def main(argv: list[str]) -> None:
    """Matte one photo as the published sample test does; prints the seconds it took."""
    ckpt, photo, out_dir, strategy = argv
    start = time.perf_counter()
    # The published script builds its network and loads the state dict (NCHW, BN unfolded).
    model = load_model(ckpt).to(memory_format=torch.contiguous_format).eval()
    img = np.array(Image.open(photo))[:, :, :3]
    h, w = img.shape[:2]
    if min(h, w) > SHORTER_SIDE_LIMIT:
        scale = SHORTER_SIDE_LIMIT / min(h, w)
        img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_LINEAR)
    with torch.no_grad():
        alpha = _inference_img(model, img, strategy)
    b, g, r = (channel * alpha for channel in cv2.split(img))
    cutout = cv2.merge((r, g, b, (alpha * 255).astype(b.dtype)))
    name = os.path.splitext(os.path.basename(photo))[0]
    cv2.imwrite(os.path.join(out_dir, f"{name}_color.png"), cutout)
    alpha = cv2.resize(alpha * 255.0, (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(os.path.join(out_dir, f"{name}_alpha.png"), alpha.astype(np.uint8))
    print(f"reference (emulated) {strategy}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
