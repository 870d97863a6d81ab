"""Named image transforms with a magnitude, applied batched with Kornia.

Every transform takes a float tensor ``(N, C, H, W)`` in [0, 1] and returns
one of the same shape, still in [0, 1]. Random ones draw their parameters
from a ``torch.Generator`` (on the CPU, so a seed gives the same images on
any device) and then run on the tensor's device: CUDA when
:func:`augment_device` finds one, else the CPU.

Geometric transforms move the ink, not the background: the background (the
median of each image's border pixels) is subtracted before the warp and put
back after, so a light-on-dark digit and a dark-on-light scan both fill the
uncovered border with their own background. Stroke thickness (``erode`` /
``dilate``) works on the ink the same way, whichever its polarity.

``magnitude`` means, per transform (see :data:`TRANSFORMS`):

- ``shift``: the largest move, as a share of the side (0.125: one pixel of 8);
- ``rotation``: the largest angle, in degrees;
- ``scale``: the largest relative change of size (0.1: 90% .. 110%);
- ``elastic``: the strength of the smooth random displacement field;
- ``blur``: the largest Gaussian sigma, in pixels;
- ``contrast``: the largest share of contrast taken away (0.5: down to half);
- ``noise``: the largest std of added Gaussian noise (pixels in [0, 1]);
- ``erode`` / ``dilate``: how far toward a one-pixel thinner / thicker stroke (0..1);
- ``rotate180``: none (a half turn, always).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from loopml.exceptions import LoopmlError


@dataclass(frozen=True)
class TransformSpec:
    """One named transform: its default magnitude, the unit of it, what it imitates."""

    name: str
    default: float
    unit: str
    imitates: str
    lowest: float = 0.0
    highest: float = math.inf


def augment_device() -> torch.device:
    """CUDA when present (batched transforms are what GPUs are for), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _uniform(generator: torch.Generator, n: int, low: float, high: float,
             device: torch.device) -> torch.Tensor:
    return (low + (high - low) * torch.rand(n, generator=generator)).to(device)


def _background(images: torch.Tensor) -> torch.Tensor:
    """Each image's background per channel: the median of its border pixels, (N, C, 1, 1)."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0],
                        images[..., :, -1]], dim=-1)
    return border.median(dim=-1).values[..., None, None]


def _warp_ink(images: torch.Tensor, warp: Callable[[torch.Tensor], torch.Tensor]
              ) -> torch.Tensor:
    background = _background(images)
    return warp(images - background) + background


def _shift(images, magnitude, generator):
    import kornia.geometry.transform as kt

    n, _, h, w = images.shape
    dx = _uniform(generator, n, -magnitude, magnitude, images.device) * w
    dy = _uniform(generator, n, -magnitude, magnitude, images.device) * h
    return _warp_ink(images, lambda x: kt.translate(x, torch.stack([dx, dy], dim=1)))


def _rotation(images, magnitude, generator):
    import kornia.geometry.transform as kt

    angle = _uniform(generator, len(images), -magnitude, magnitude, images.device)
    return _warp_ink(images, lambda x: kt.rotate(x, angle))


def _scale(images, magnitude, generator):
    import kornia.geometry.transform as kt

    factor = _uniform(generator, len(images), 1 - magnitude, 1 + magnitude, images.device)
    return _warp_ink(images, lambda x: kt.scale(x, factor[:, None].repeat(1, 2)))


def _elastic(images, magnitude, generator):
    import kornia.geometry.transform as kt

    n, _, h, w = images.shape
    noise = (torch.rand(n, 2, h, w, generator=generator) * 2 - 1).to(images.device)
    side = max(h, w)
    kernel = 2 * max(1, side // 4) + 1
    sigma = max(1.0, side / 8)
    return _warp_ink(images, lambda x: kt.elastic_transform2d(
        x, noise, kernel_size=(kernel, kernel), sigma=(sigma, sigma),
        alpha=(magnitude, magnitude)))


def _blur(images, magnitude, generator):
    from kornia.filters import gaussian_blur2d

    sigma = _uniform(generator, len(images), 0.5 * magnitude, magnitude, images.device)
    sigma = sigma.clamp(min=1e-3)
    # reflect padding needs less than the side: an 8x8 digit takes a kernel of at most 15
    kernel = min(2 * math.ceil(3 * magnitude) + 1, 2 * min(images.shape[-2:]) - 1)
    return gaussian_blur2d(images, (kernel, kernel), torch.stack([sigma, sigma], dim=1))


def _contrast(images, magnitude, generator):
    keep = 1 - _uniform(generator, len(images), 0.0, magnitude, images.device)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (images - mean) * keep[:, None, None, None]


def _noise(images, magnitude, generator):
    std = _uniform(generator, len(images), 0.0, magnitude, images.device)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    return images + noise * std[:, None, None, None]


def _stroke(images: torch.Tensor, magnitude: float, *, thicker: bool) -> torch.Tensor:
    """Blend toward the image with its ink grown (dilate) or shrunk (erode) by one pixel."""
    import kornia.morphology as km

    dark_ink = _background(images).mean(dim=1, keepdim=True) > 0.5  # (N, 1, 1, 1)
    ink_up = torch.where(dark_ink, 1 - images, images)  # ink bright: dilation thickens it
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]],
                          device=images.device)
    moved = km.dilation(ink_up, kernel) if thicker else km.erosion(ink_up, kernel)
    moved = ink_up + magnitude * (moved - ink_up)
    return torch.where(dark_ink, 1 - moved, moved)


def _erode(images, magnitude, generator):
    return _stroke(images, magnitude, thicker=False)


def _dilate(images, magnitude, generator):
    return _stroke(images, magnitude, thicker=True)


def _rotate180(images, magnitude, generator):
    return torch.rot90(images, 2, dims=(2, 3))


TRANSFORMS: dict[str, TransformSpec] = {s.name: s for s in (
    TransformSpec("shift", 0.125, "share of the side", "off-centre framing", 0.0, 0.5),
    TransformSpec("rotation", 15.0, "degrees", "a tilted camera or hand", 0.0, 180.0),
    TransformSpec("scale", 0.1, "relative size change", "nearer or farther objects", 0.0, 0.9),
    TransformSpec("elastic", 1.0, "displacement strength", "handwriting wobble", 0.0, 10.0),
    TransformSpec("blur", 1.0, "Gaussian sigma (pixels)", "out-of-focus or moving camera",
                  0.0, 10.0),
    TransformSpec("contrast", 0.5, "share of contrast removed", "faded or dim captures",
                  0.0, 0.95),
    TransformSpec("noise", 0.05, "noise std", "sensor noise", 0.0, 1.0),
    TransformSpec("erode", 0.5, "share of a one-pixel thinning", "thin pens", 0.0, 1.0),
    TransformSpec("dilate", 0.5, "share of a one-pixel thickening", "thick pens", 0.0, 1.0),
    TransformSpec("rotate180", 0.0, "none", "upside-down captures", 0.0, 0.0),
)}

_APPLY: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "shift": _shift, "rotation": _rotation, "scale": _scale, "elastic": _elastic,
    "blur": _blur, "contrast": _contrast, "noise": _noise, "erode": _erode,
    "dilate": _dilate, "rotate180": _rotate180,
}


def transform_spec(name: str) -> TransformSpec:
    """The transform ``name``, or a LoopmlError listing them."""
    if name not in TRANSFORMS:
        raise LoopmlError(f"unknown transform '{name}'",
                          hint=f"the transforms are: {', '.join(TRANSFORMS)}")
    return TRANSFORMS[name]


def checked_magnitude(name: str, magnitude: float, spec: Any) -> float:
    """``magnitude`` if it lies in ``spec``'s range (``lowest`` .. ``highest``), else a
    LoopmlError naming the range and its unit; any transform's spec (image, row, text)."""
    if not spec.lowest <= magnitude <= spec.highest:
        raise LoopmlError(f"magnitude {magnitude:g} of '{name}' is outside "
                          f"{spec.lowest:g} .. {spec.highest:g} ({spec.unit})")
    return magnitude


def apply_transform(name: str, images: torch.Tensor, magnitude: float | None = None, *,
                    generator: torch.Generator) -> torch.Tensor:
    """``images`` (N, C, H, W) in [0, 1] with transform ``name`` at ``magnitude``, clipped.

    ``magnitude`` None: the transform's default. Random parameters come from
    ``generator`` (a CPU generator), one draw per image.

    >>> g = torch.Generator().manual_seed(0)
    >>> apply_transform("shift", torch.rand(4, 1, 8, 8), 0.125, generator=g).shape
    torch.Size([4, 1, 8, 8])
    """
    spec = transform_spec(name)
    magnitude = checked_magnitude(name, spec.default if magnitude is None else float(magnitude),
                                  spec)
    if len(images) == 0:
        return images
    with torch.no_grad():
        return _APPLY[name](images, magnitude, generator).clamp(0.0, 1.0)
