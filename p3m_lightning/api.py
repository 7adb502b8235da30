"""Matting your own photos from Python.

Example::

    from p3m_lightning.api import Matter

    matter = Matter("p3mnet_pretrained_on_p3m10k.pth")  # published .pth or Lightning .ckpt
    alpha = matter.predict("photo.jpg")  # (H, W) float32 in [0, 1]
    rgba = matter.cutout("photo.jpg", alpha)  # (H, W, 4) uint8, colour premultiplied
    on_white = matter.composite("photo.jpg", alpha, "#ffffff")

    gca = Matter("gca.ckpt")  # a trimap-based method: a trimap per photo
    alpha = gca.predict("photo.jpg", trimap="photo_trimap.png")

Each photo goes through the model's inference strategy (``p3m_lightning.strategies``; for
P3M-Net the test strategies of docs/p3m-net.md §6) with
the reference's handling of sample photos: a photo whose shorter side exceeds 1080 pixels is
first resized to a 1080-pixel shorter side, and the alpha is resized back to the photo's size.
This also bounds memory: a 6000x4000 photo costs no more network memory than a 1620x1080 one.

Photos with a side under 32 pixels (the network's smallest input) are reflect-padded to 32
and the alpha is cropped back: the network then sees the pixels at their own scale rather
than stretched.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from PIL import Image, ImageColor
from torch import nn

from p3m_lightning.imageio import alpha_to_uint8, pil_to_rgb8, read_image, to_rgb8
from p3m_lightning.inference import MAX_SIDE
from p3m_lightning.models.checkpoint import load_checkpoint
from p3m_lightning.models.registry import get_architecture
from p3m_lightning.normalization import normalize
from p3m_lightning.runtime import BACKENDS, OnnxRuntimeNet
from p3m_lightning.strategies import InferenceStrategy, build_strategy, for_photos

ImageLike = np.ndarray | Image.Image | str | os.PathLike
"""A photo: an ``(H, W[, C])`` array (see ``imageio.to_rgb8``), a Pillow image or a file path."""

Background = tuple[int, int, int] | str | np.ndarray | Image.Image | os.PathLike
"""A composite background: an RGB tuple, a colour (``"#RRGGBB"``, ``"white"``) or an image."""

SHORTER_SIDE_LIMIT = 1080
"""Photos whose shorter side exceeds this are matted at this shorter side (the reference's)."""

MIN_SIDE = 32
"""Smallest side the network accepts; smaller photos are reflect-padded up to it."""

PRECISIONS = {"32": torch.float32, "bf16": torch.bfloat16}

_COMPOSITE_ROWS = 256
"""Rows blended at once, so compositing a large photo holds no full-size float copy."""


def load_rgb(image: ImageLike) -> np.ndarray:
    """Any ``ImageLike`` -> ``(H, W, 3)`` uint8 RGB.

    A path is read with ``imageio.read_image`` (EXIF orientation applied); a Pillow image is
    taken pixel for pixel as it is (no EXIF rotation), so the alpha matches its ``size``.

    Raises:
        ImageReadError: an unreadable file.
        TypeError, ValueError: another kind of object, or an array of unsupported shape/dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb8(image)
    if isinstance(image, np.ndarray):
        return to_rgb8(image)
    raise TypeError(f"expected a numpy array, a PIL image or a path, got {type(image).__name__}")


def _check_alpha(rgb: np.ndarray, alpha: np.ndarray) -> None:
    if alpha.shape != rgb.shape[:2]:
        raise ValueError(
            f"alpha of shape {alpha.shape} does not match the image's {rgb.shape[:2]}; "
            "pass the alpha that predict() returned for this image"
        )


def parse_background(background: Background) -> tuple[int, int, int] | np.ndarray:
    """A ``Background`` -> an RGB colour tuple, or the background image as uint8 RGB.

    A string names an image file if such a file exists, a colour otherwise.

    Raises:
        ValueError: not a colour and not an existing file; a tuple that is not RGB 0..255.
        ImageReadError: the background image cannot be read.
    """
    if isinstance(background, (tuple, list)):
        if len(background) != 3 or not all(0 <= int(c) <= 255 for c in background):
            raise ValueError(f"a background colour is three values 0..255, got {background}")
        return tuple(int(c) for c in background)
    if isinstance(background, str) and not os.path.exists(background):
        try:
            return ImageColor.getrgb(background)[:3]
        except ValueError:
            raise ValueError(
                f"background {background!r} is neither an existing image file nor a colour "
                "(e.g. '#00ff00', 'white')"
            ) from None
    return load_rgb(background)


def _fit_background(background: Background, height: int, width: int) -> np.ndarray:
    """The background as uint8: ``(1, 1, 3)`` for a colour, ``(H, W, 3)`` for an image.

    An image background is scaled to cover ``height x width`` and centre-cropped.
    """
    bg = parse_background(background)
    if isinstance(bg, tuple):
        return np.array(bg, dtype=np.uint8).reshape(1, 1, 3)
    scale = max(height / bg.shape[0], width / bg.shape[1])
    cover = (max(width, round(bg.shape[1] * scale)), max(height, round(bg.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    bg = cv2.resize(bg, cover, interpolation=interpolation)
    top, left = (bg.shape[0] - height) // 2, (bg.shape[1] - width) // 2
    return bg[top : top + height, left : left + width]


def load_trimap(trimap: ImageLike) -> np.ndarray:
    """A trimap (file, array or Pillow image) -> ``(H, W)`` uint8: 0 background, 255
    foreground, anything else unknown (a colour file gives its first channel)."""
    if isinstance(trimap, np.ndarray) and trimap.ndim == 2:
        return to_rgb8(trimap)[..., 0]
    return load_rgb(trimap)[..., 0]


class Matter:
    """A matting model loaded once, matting any number of photos.

    Any registered method works: P3M-Net (and its journal variants), GFM, MODNet, SHM and
    BASIC take the photo alone (BASIC also a background plate); the trimap-based methods (DIM,
    AlphaGAN, GCA, IndexNet, FBA) need a trimap per photo (``predict(photo, trimap=...)``).

    Args:
        ckpt_path: a published ``.pth``, a bare state dict or a Lightning ``.ckpt`` of this
            project (see ``p3m_lightning.models.checkpoint.load_model``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        strategy: an inference strategy name (``p3m_lightning.strategies.STRATEGIES``) or
            component; ``None``: the method's choice for photos (P3M-Net: ``hybrid``; the
            others: their published protocol, e.g. ``gfm_hybrid``, ``trimap_guided``).
        precision: ``"32"`` or ``"bf16"`` (the network under bfloat16 autocast; the strategy's
            resizing and the returned alpha stay float32).
        max_side: cap on each side the network sees.
        shorter_side_limit: photos whose shorter side exceeds this are matted at this shorter
            side and the alpha is resized back; ``None`` or 0 matte at full size.
        backend: ``"torch"``, or ``"onnxruntime"`` (CPU, fp32, P3M-Net only): the network
            exported once per checkpoint to a cache folder and run by ONNX Runtime
            (``p3m_lightning.runtime``).
        architecture: the registered method of a file that does not name it (a published or
            bare state dict of another method than P3M-Net), e.g. ``"gfm"``.
        architecture_config: its configuration where it is not the released size (e.g.
            ``{"backbone": "swin_t"}`` for ``p3m_journal``).
        resampling: ``"fast"`` (torch's resizing where the strategy resizes: P3M-Net, GFM,
            the ``resize`` methods) or ``"official"`` (the method's test script's own, as
            ``eval.py`` and training's test use; slower).

    Raises:
        ValueError: an unknown strategy, precision or resampling, or CUDA asked for but not
            available.
        FileNotFoundError, CheckpointError: the checkpoint cannot be used.
    """

    def __init__(
        self,
        ckpt_path: str | os.PathLike,
        device: str | torch.device = "cpu",
        strategy: str | InferenceStrategy | None = None,
        precision: str | int = "32",
        max_side: int = MAX_SIDE,
        shorter_side_limit: int | None = SHORTER_SIDE_LIMIT,
        backend: str = "torch",
        architecture: str | None = None,
        architecture_config: dict | None = None,
        resampling: str = "fast",
    ) -> None:
        self.precision = str(precision)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but PyTorch sees no CUDA GPU; use 'cpu'")
        if max_side < MIN_SIDE:
            raise ValueError(f"max_side must be at least {MIN_SIDE}, got {max_side}")
        self.max_side = int(max_side)
        self.shorter_side_limit = int(shorter_side_limit) if shorter_side_limit else None
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend != "torch" and (self.device.type != "cpu" or self.precision != "32"):
            raise ValueError(f"backend {backend!r} runs on device 'cpu' at precision '32' only")
        self.backend = backend
        loaded = load_checkpoint(
            ckpt_path,
            map_location=self.device,
            fuse_bn=True,
            architecture=architecture,
            architecture_config=architecture_config,
        )
        self.model = loaded.net
        self.architecture = loaded.architecture
        photo_strategy = get_architecture(loaded.architecture).photo_strategy
        self.strategy = for_photos(
            build_strategy(
                strategy if strategy is not None else photo_strategy or loaded.strategy,
                self.max_side,
            ),
            resampling,
        )
        self.inputs: tuple[str, ...] = tuple(getattr(self.model, "inputs", ("image",)))
        self._net: nn.Module | OnnxRuntimeNet = self.model
        if backend == "onnxruntime":
            # The runtime serves networks that compute named maps on request (P3M-Net).
            if not getattr(self.model, "selects_outputs", False):
                raise ValueError(
                    f"backend 'onnxruntime' exports P3M-Net only; this checkpoint is "
                    f"{self.architecture}: use backend 'torch'"
                )
            self._net = OnnxRuntimeNet(self.model, ckpt_path)

    @property
    def needs_trimap(self) -> bool:
        """The model is trimap-based: ``predict`` needs a trimap per photo."""
        return "trimap" in self.inputs

    @property
    def needs_plate(self) -> bool:
        """The model is background-based (BASIC): ``predict`` needs a background plate."""
        return "bg" in self.inputs

    def _working_size(self, height: int, width: int) -> tuple[int, int]:
        """Size the photo is matted at: the shorter side capped at ``shorter_side_limit``."""
        limit = self.shorter_side_limit
        if limit is None or min(height, width) <= limit:
            return height, width
        scale = limit / min(height, width)
        return max(limit, round(height * scale)), max(limit, round(width * scale))

    @torch.inference_mode()
    def predict(
        self, image: ImageLike, trimap: ImageLike | None = None, plate: ImageLike | None = None
    ) -> np.ndarray:
        """Alpha matte of one photo.

        Args:
            image: an ``ImageLike`` (RGB; a path is read with EXIF orientation applied).
            trimap: the photo's trimap (same size; 0 background, 255 foreground, other values
                unknown), required by trimap-based models, ignored by the others.
            plate: the photo's background without the person (same size), required by
                background-based models (BASIC), ignored by the others.

        Returns:
            ``(H, W)`` float32 alpha in [0, 1], at the photo's own size.

        Raises:
            ValueError: a trimap or plate is needed and missing, or its size differs.
        """
        rgb = load_rgb(image)
        height, width = rgb.shape[:2]
        guides: dict[str, np.ndarray] = {}
        for key, given, what in (("trimap", trimap, "a trimap"), ("bg", plate, "a plate")):
            if key not in self.inputs:
                continue
            if given is None:
                raise ValueError(
                    f"{self.architecture} needs {what} for every photo "
                    f"({'trimap' if key == 'trimap' else 'plate'}=...)"
                )
            array = load_trimap(given) if key == "trimap" else load_rgb(given)
            if array.shape[:2] != (height, width):
                raise ValueError(
                    f"{what[2:]} is {array.shape[1]}x{array.shape[0]}, the photo {width}x{height}"
                )
            guides[key] = array
        work_h, work_w = self._working_size(height, width)
        if (work_h, work_w) != (height, width):
            # Shrinking the uint8 photo (area-averaged) keeps no full-size float copy.
            rgb = cv2.resize(rgb, (work_w, work_h), interpolation=cv2.INTER_AREA)
            guides = {
                k: cv2.resize(
                    v,
                    (work_w, work_h),
                    interpolation=cv2.INTER_NEAREST if k == "trimap" else cv2.INTER_AREA,
                )
                for k, v in guides.items()
            }
        pad_h, pad_w = max(0, MIN_SIDE - work_h), max(0, MIN_SIDE - work_w)
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
            guides = {
                k: np.pad(v, ((0, pad_h), (0, pad_w), *((0, 0),) * (v.ndim - 2)), mode="reflect")
                for k, v in guides.items()
            }
        inputs = {"image": self._tensor(rgb)}
        if "trimap" in guides:
            inputs["trimap"] = torch.tensor(guides["trimap"], device=self.device)[None, None]
            inputs["trimap"] = inputs["trimap"].float()
        if "bg" in guides:
            inputs["bg"] = self._tensor(guides["bg"])
        dtype = PRECISIONS[self.precision]
        # Only the network's own layers run under autocast (resizes and trimaps are not
        # autocast ops, and every strategy reads the outputs as float32).
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            alpha = self.strategy(self._net, inputs)
        alpha = alpha[:work_h, :work_w].float().cpu().numpy()
        if (work_h, work_w) != (height, width):
            alpha = np.clip(
                cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1
            )
        return np.ascontiguousarray(alpha, dtype=np.float32)

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        # A copy: the caller's array may be read-only (Pillow's) and must not be aliased.
        x = torch.tensor(rgb, device=self.device).permute(2, 0, 1).unsqueeze(0)
        return normalize(x.float().div_(255.0))

    @staticmethod
    def cutout(image: ImageLike, alpha: np.ndarray) -> np.ndarray:
        """RGBA cut-out: colour premultiplied by alpha, as the reference writes it (§6 of
        docs/p3m-net.md).

        Args:
            image: the photo ``alpha`` was predicted for.
            alpha: ``(H, W)`` in [0, 1], e.g. from ``predict``.

        Returns:
            ``(H, W, 4)`` uint8; the colour is ``round(rgb * a8 / 255)`` with ``a8`` the 8-bit
            alpha stored in the fourth channel.
        """
        rgb = load_rgb(image)
        _check_alpha(rgb, alpha)
        a8 = alpha_to_uint8(alpha)
        # cv2.multiply rounds (saturating) in uint8, without a full-size float copy.
        colour = cv2.multiply(rgb, cv2.merge([a8, a8, a8]), scale=1.0 / 255.0)
        return np.dstack((colour, a8))

    @staticmethod
    def composite(image: ImageLike, alpha: np.ndarray, background: Background) -> np.ndarray:
        """The photo over a new background: ``alpha * photo + (1 - alpha) * background``.

        P3M-Net predicts no foreground colour, so the photo's own colour is used; hair
        strands keep a trace of the old background.

        Args:
            image: the photo ``alpha`` was predicted for.
            alpha: ``(H, W)`` in [0, 1].
            background: an RGB tuple, a colour string (``"#RRGGBB"``, ``"white"``), or an image
                (array, Pillow image or path) scaled to cover the photo and centre-cropped.

        Returns:
            ``(H, W, 3)`` uint8 RGB.
        """
        rgb = load_rgb(image)
        _check_alpha(rgb, alpha)
        height, width = alpha.shape
        bg = _fit_background(background, height, width)
        out = np.empty_like(rgb)
        for top in range(0, height, _COMPOSITE_ROWS):
            rows = slice(top, top + _COMPOSITE_ROWS)
            a = np.clip(alpha[rows, :, None].astype(np.float32), 0.0, 1.0)
            back = bg[rows] if bg.shape[0] > 1 else bg
            blend = a * rgb[rows] + (np.float32(1.0) - a) * back + np.float32(0.5)
            out[rows] = blend.astype(np.uint8)
        return out
