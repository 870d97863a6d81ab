"""A digits project whose val and test images are distorted as a camera would, train clean.

Issue 11's augmentation acceptance needs a project where the model meets, in
val and test, distortions it never saw in train: random shifts, small
rotations and blur. :func:`camera_digits` builds it from scikit-learn's
digits as an image folder (one PNG per example, one sub-folder per class),
so every example's id is its file path and keeps its part when its pixels
change: the project is initialised on the clean images, then the files that
loopml placed in val and test are overwritten with distorted copies.

The distortions are made with ``scipy.ndimage``, not with loopml's own
transforms, so the test does not measure loopml against itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from scipy import ndimage
from sklearn.datasets import load_digits

from loopml import Project

#: the camera: largest shift (pixels), largest rotation (degrees), blur sigma range (pixels)
SHIFT = 1.5
ROTATION = 15.0
BLUR = (0.7, 1.0)


def distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 8x8 digit (values 0..16) shifted, rotated about its centre and blurred, in 0..16."""
    angle = np.radians(rng.uniform(-ROTATION, ROTATION))
    shift = rng.uniform(-SHIFT, SHIFT, size=2)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.array([[c, -s], [s, c]])
    centre = (np.array(image.shape) - 1) / 2
    offset = centre - matrix @ (centre + shift)  # output pixel p reads input matrix @ p + offset
    moved = ndimage.affine_transform(image, matrix, offset=offset, order=1, cval=0.0)
    blurred = ndimage.gaussian_filter(moved, sigma=rng.uniform(*BLUR), mode="constant")
    return np.clip(blurred, 0, 16)


def _write(path: Path, image: np.ndarray) -> None:
    pixels = np.round(np.clip(image, 0, 16) / 16 * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


def camera_digits(root: Path, *, seed: int = 0, image_size: int = 8) -> Project:
    """A digits project in ``root``: train clean, val and test seen through a camera.

    The images live in ``root / "images"``; ``loopml.yaml`` reads them at
    ``image_size`` (8: digits' own size, so a CNN trains in seconds). The
    distortions are drawn from ``seed``.
    """
    bunch = load_digits()
    folder = root / "images"
    paths = []
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        path = folder / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, image)
        paths.append(path)
    project = Project.init(root, data="images", target="label")
    scope_file = root / "loopml.yaml"
    text = yaml.safe_load(scope_file.read_text())
    text["data"]["image_size"] = image_size
    scope_file.write_text(yaml.safe_dump(text, sort_keys=False))
    project = Project.load(root)
    parts = project.split.parts
    rng = np.random.default_rng(seed)
    for i, path in enumerate(paths):
        if parts.get(path.relative_to(folder).as_posix()) in ("val", "test"):
            _write(path, distort(bunch.images[i], rng))
    return Project.load(root)
