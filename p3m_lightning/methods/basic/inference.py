"""Background Matting's own single-image test procedure (``BASICOfficial``, strategy ``basic``).

It follows the authors' ``test_background-matting_image.py`` and ``functions.py`` at commit
``9076585`` of github.com/senguptaumd/Background-Matting, step for step on the 8-bit arrays the
script reads: a box around the person mask, every crop stretched to 512x512, the mask cleaned
up, one network pass, the largest connected component of the alpha, an 8-bit alpha pasted
back into the box (0 outside it). The script reads the person mask from a file (DeepLabv3+'s);
here it is the project's plate segmentation, our choice (docs/methods/basic.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from p3m_lightning.inference import InferenceStrategy, check_inputs
from p3m_lightning.methods.basic.network import plate_segmentation
from p3m_lightning.normalization import normalize, rgb8

__all__ = [
    "BASICOfficial",
    "clean_segmentation",
    "crop_box",
    "crop_to_network",
    "largest_component",
    "official_alpha",
    "plate_mask",
    "uncrop",
]

_RESO = 512  # test_background-matting_image.py:60, reso=(512,512)
_EXTEND = 25  # :131, K, rows replicated below the mask before the morphology
_DELETE_BELOW = 250  # :134, empty rows below this one are deleted
_ON_ABOVE = 0.2  # :130, mask levels above this become 1
_COMPONENT_ABOVE = 0.05  # :169, the alpha's connected components are of alpha > 0.05


def crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The official crop box around a person mask (``functions.py:36-46, 60-77``).

    The square of side ``1.2 s`` (``s`` the larger extent of the mask's nonzero pixels)
    starting ``0.1 s`` above and left of them, clipped to rows ``[0, H-1]`` and columns
    ``[0, W-1]``, then rounded half to even: a clipped box is not square, and one clipped at
    the bottom or right usually leaves out the last row or column.

    Args:
        mask: ``(H, W)`` with at least one nonzero pixel.

    Returns:
        ``(top, left, height, width)``.
    """
    rows, cols = np.nonzero(mask)
    top, left = int(rows.min()), int(cols.min())
    side = max(int(rows.max()) - top, int(cols.max()) - left)
    y1, x1 = max(0.0, top - 0.1 * side), max(0.0, left - 0.1 * side)
    y2, x2 = top + 1.1 * side, left + 1.1 * side
    y2 = mask.shape[0] - 1 if y2 >= mask.shape[0] else y2
    x2 = mask.shape[1] - 1 if x2 >= mask.shape[1] else x2
    box = np.around([y1, x1, y2 - y1, x2 - x1]).astype(int)
    return int(box[0]), int(box[1]), int(box[2]), int(box[3])


def crop_to_network(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box of an ``(H, W[, C])`` uint8 array stretched to 512x512 (``functions.py:48-58``:
    ``cv2.resize``'s default bilinear, each axis on its own)."""
    top, left, height, width = box
    return cv2.resize(array[top : top + height, left : left + width], (_RESO, _RESO))


def clean_segmentation(mask: np.ndarray) -> np.ndarray:
    """The official clean-up of the cropped 512x512 mask
    (``test_background-matting_image.py:127-145``).

    Levels above 0.2 become 1 (lower ones stay); when rows below row 250 are empty, they are
    deleted together with the two rows above the first of them, so the mask reaches the bottom
    and the person is not cut off there; the bottom row is then replicated 25 + (deleted) rows
    down, the mask eroded 10 times by a 3x3 ellipse (a cross), dilated 5 times by a 5x5
    ellipse, blurred by a 31x31 Gaussian (sigma 5), truncated to 8 bits, and the first 512
    rows kept.

    Args:
        mask: ``(512, 512)`` uint8.

    Returns:
        ``(512, 512)`` uint8, the segmentation the network takes (as ``level / 255``).
    """
    seg = mask.astype(np.float32) / 255
    seg[seg > _ON_ABOVE] = 1
    empty = np.nonzero(seg.sum(axis=1) == 0)[0]
    deleted = empty[empty > _DELETE_BELOW]
    if len(deleted) > 0:
        deleted = np.concatenate([[deleted[0] - 2, deleted[0] - 1], deleted])
        seg = np.delete(seg, deleted, axis=0)
    seg = cv2.copyMakeBorder(seg, 0, _EXTEND + len(deleted), 0, 0, cv2.BORDER_REPLICATE)
    seg = cv2.erode(seg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)), iterations=10)
    seg = cv2.dilate(seg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)), iterations=5)
    seg = cv2.GaussianBlur(seg, (31, 31), 0)
    return (255 * seg).astype(np.uint8)[:_RESO]


def largest_component(alpha: np.ndarray) -> np.ndarray | None:
    """``alpha`` inside the largest 8-connected component of ``alpha > 0.05``, 0 elsewhere
    (``test_background-matting_image.py:168-175``; of equal sizes the first in raster order).

    Returns:
        The masked alpha, or ``None`` when no pixel exceeds 0.05 (the script then skips the
        image and writes no matte).
    """
    # Imported here: scipy.ndimage takes about 0.2 s to import, and the strategies'
    # allow-list imports this module in every prediction process.
    import scipy.ndimage as ndi

    labels, count = ndi.label(alpha > _COMPONENT_ABOVE, structure=np.ones((3, 3), dtype=int))
    if count == 0:
        return None
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return alpha * (labels == largest)


def uncrop(alpha: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """The 512x512 uint8 alpha resized (bilinear, in uint8) into ``box`` of a zero ``shape``
    matte (``functions.py:79-92``)."""
    top, left, height, width = box
    out = np.zeros(shape, dtype=np.uint8)
    out[top : top + height, left : left + width] = cv2.resize(alpha, (width, height))
    return out


def plate_mask(image: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """The person mask given to the official procedure here: ``plate_segmentation`` of the
    8-bit photo and plate, rounded to 8 bits (as a mask file would hold it).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        plate: ``(H, W, 3)`` uint8 RGB background plate.

    Returns:
        ``(H, W)`` uint8.
    """
    image_t, plate_t = (
        torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (image, plate)
    )
    seg = plate_segmentation(image_t, plate_t)[0, 0]
    return torch.round(seg * 255).to(torch.uint8).numpy()


def _network_input(array: np.ndarray, device: torch.device) -> Tensor:
    """A 512x512 uint8 RGB crop as the ImageNet-normalised ``(1, 3, 512, 512)`` the network
    takes (it maps it back to the official ``2 x / 255 - 1``)."""
    return normalize(torch.from_numpy(array).permute(2, 0, 1)[None].float().div(255)).to(device)


def official_alpha(
    net: nn.Module,
    image: np.ndarray,
    plate: np.ndarray,
    mask: np.ndarray,
    device: torch.device | str = "cpu",
) -> np.ndarray | None:
    """The official script's 8-bit alpha (``test_background-matting_image.py:78-191``).

    Args:
        net: a ``BASICNet`` in eval mode, on ``device``.
        image: ``(H, W, 3)`` uint8 RGB photo.
        plate: ``(H, W, 3)`` uint8 RGB background plate.
        mask: ``(H, W)`` uint8 person mask (the script's ``*_masksDL.png``).
        device: where the network runs (the rest runs on the CPU, as cv2 does).

    Returns:
        ``(H, W)`` uint8 alpha, 0 outside the crop box; ``None`` where the script writes no
        matte: an empty mask (it fails on the box) or no alpha above 0.05 (it skips the image).
    """
    if not mask.any():
        return None
    box = crop_box(mask)
    seg = torch.from_numpy(clean_segmentation(crop_to_network(mask, box)))[None, None]
    out = net(
        _network_input(crop_to_network(image, box), device),
        _network_input(crop_to_network(plate, box), device),
        seg.to(device).float().div(255),
    )
    alpha = out["alpha"][0, 0].detach().float().cpu().numpy().clip(0, 1)
    kept = largest_component(alpha)
    if kept is None:
        return None
    return uncrop((255 * kept).astype(np.uint8), box, mask.shape)


class BASICOfficial(InferenceStrategy):
    """Background Matting's test procedure (``official_alpha``) on the project's inputs.

    The photo and plate are the exact 8-bit arrays behind the normalised inputs (``rgb8``);
    the person mask the script would read from a file is ``plate_mask`` (our choice: how the
    P3M authors obtained one is not published). The alpha is the script's 8-bit matte as
    ``level / 255``; where the script writes none (empty mask, no alpha above 0.05), 0
    everywhere. Official: no cap on the image size (``max_side`` is not used).
    """

    name = "basic"

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        image, plate = rgb8(inputs["image"]), rgb8(inputs["bg"])
        device = inputs["image"].device
        alpha = official_alpha(net, image, plate, plate_mask(image, plate), device)
        if alpha is None:
            alpha = np.zeros(image.shape[:2], dtype=np.uint8)
        return torch.from_numpy(alpha).to(device).float().div(255)
