"""Synthesize images of characters: each class's character rendered in many fonts.

The OCR recipe for data the model lacks: draw the characters from scratch. Each
class label must be one character (digits, letters); it is drawn in the
TrueType fonts matplotlib ships (DejaVu, STIX, Computer Modern) with PIL, at a
varied size, stroke width, rotation, position, a smooth elastic wobble (as a
hand draws), blur and noise (one seeded NumPy generator), shrunk to the
dataset's image size and each mapped onto the intensities of one real train
image of its class, so a synthesized "3" has the mean, spread and ink fraction
of one of the dataset's own 3s.

Font shapes are not handwriting: a model trained on real digits reads only
about half of the raw glyphs as their class. So :data:`CANDIDATES` glyphs are
drawn for each one kept, and the kept ones are those a model of real train
examples (the reference run's own, when there is one) reads most surely as
their class: glyphs in the real classes' shape, with the fonts' variety.

A font is used for a character only when it really draws it: a font that
draws nothing, or the same box it draws for a character no font has (its
"missing glyph"), is skipped for that class, and :class:`SynthResult` names it.

>>> result = synthesize(dataset, split, count=20, seed=0)  # doctest: +SKIP
>>> result.images.shape, result.skipped  # doctest: +SKIP
((200, 1, 8, 8), [])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import Dataset
from loopml.data.images import image_column, images_of, modality
from loopml.data.split import Split
from loopml.exceptions import DataError, LoopmlError
from loopml.groups import Group, PairGroup, Rows, membership
from loopml.iteration import Iteration
from loopml.progress import Progress, counter

#: the text fonts matplotlib ships (file stems); its symbol fonts (cmex10, cmsy10,
#: STIXSiz*) map letters and digits to other shapes, and LastResort draws placeholders
TEXT_FONTS = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
    "cmr10", "cmb10", "cmti10", "cmss10", "cmtt10",
)
#: characters no font draws: what a font draws for them is its "missing glyph"
MISSING = ("\uffff", "\U0010fffd")
CHECK_SIZE = 48  # pixels: the size the coverage check renders at
WORK_SIDE = 32  # the working canvas is at least this many pixels per side
#: placement jitter, a share of the free space either side (scanned characters are centred)
SHIFT = 0.2
#: the widest extra stroke, as a share of the drawing size: 1/48 (2 px at 96 px). With
#: screening, 1/96 lifted the CNN above (over seeds 0-5) by +0.0142 to +0.0228, 1/48 by
#: +0.0160 to +0.0222: no clear difference, but 1/48 cleared the spread at every draw
STROKE = 48
#: the elastic wobble: largest displacement and smoothness, as shares of the canvas side
#: (measured on digits: an RBF SVC trained on 200 glyphs per class reads the real
#: digits at 0.71 with the wobble, per-image intensities and SHIFT 0.2, 0.64 without)
WOBBLE, WOBBLE_SMOOTH = 0.1, 0.25
#: glyphs drawn per glyph kept; the kept ones are read most surely as their class by a
#: model of real train examples (:func:`screen`). Measured (cnn on 10% of digits' train,
#: 20 glyphs per class, val accuracy lift over seeds 0-5, spread 0.0150; draws = glyph
#: seeds): 1 (no screening) +0.0000 to +0.0074 over two draws, 5 +0.0117 to +0.0160,
#: 10 +0.0130 to +0.0204, 20 +0.0160 to +0.0222 over three draws (all beyond the spread,
#: and +0.0210 to +0.0321 over seeds 0-2, spread <= 0.0170), 40 +0.0173
CANDIDATES = 20
#: the screening model needs this many real examples of each of at least two classes
MIN_SCREEN = 2
SHOWN = 10  # classes named in an error message


@dataclass(frozen=True)
class Skipped:
    """A font not used for a class, and why."""

    font: str
    label: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"font": self.font, "class": _plain(self.label), "reason": self.reason}


@dataclass
class SynthResult:
    """Synthesized images, their labels, and which fonts drew them.

    ``images`` is (n, C, H, W) float64 in the dataset's own units (0..16 for
    ``digits``, 0..255 for image files); ``labels`` and ``fonts`` hold one
    entry per image; ``skipped`` the fonts the coverage check refused, per class.
    ``candidates`` glyphs were drawn per glyph kept, screened by a model of
    ``n_screen`` real train examples (1 and 0: none screened).
    """

    images: np.ndarray
    labels: np.ndarray
    fonts: np.ndarray
    classes: list
    skipped: list[Skipped] = field(default_factory=list)
    group: str | None = None
    lift: Any = None  # the action's Lift, once measured
    candidates: int = 1
    n_screen: int = 0

    def used(self, label: Any) -> list[str]:
        """The fonts that drew ``label``'s images, in order of first use."""
        drawn = self.fonts[self.labels == label]
        return list(dict.fromkeys(drawn.tolist()))

    def skipped_for(self, label: Any) -> list[Skipped]:
        return [s for s in self.skipped if s.label == label]

    def frame(self, dataset: Dataset) -> pd.DataFrame:
        """The images as rows with the dataset's features and target, for ``add_examples``."""
        column = image_column(dataset)
        if column is None:
            n = len(self.images)
            rows = pd.DataFrame(self.images.reshape(n, -1), columns=list(dataset.features))
        else:
            pixels = np.clip(np.rint(self.images), 0, 255).astype(np.uint8)
            rows = pd.DataFrame({column: [p.transpose(1, 2, 0) if p.shape[0] == 3 else p[0]
                                          for p in pixels]})
        rows[dataset.target] = self.labels
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "n_images": len(self.images),
                "image_shape": list(self.images.shape[1:]),
                "classes": [{"class": _plain(c), "images": int((self.labels == c).sum()),
                             "fonts_used": self.used(c),
                             "fonts_skipped": [s.font for s in self.skipped_for(c)]}
                            for c in self.classes],
                "skipped": [s.to_dict() for s in self.skipped],
                "candidates_per_glyph": self.candidates, "n_screen": self.n_screen,
                "lift": None if self.lift is None else self.lift.to_dict()}

    def describe(self) -> str:
        n_fonts = len(set(self.fonts.tolist()))
        text = (f"synthesized {len(self.images)} image(s) of {len(self.classes)} class(es) "
                f"in {n_fonts} font(s)")
        if self.skipped:
            text += f"; {len(self.skipped)} font/class pair(s) skipped (no glyph)"
        if self.candidates > 1:
            text += (f"; kept the best 1 in {self.candidates} as read by a model of "
                     f"{self.n_screen} real train example(s)")
        return text


# ---------------------------------------------------------------- the public entry


def synthesize(dataset: Dataset, split: Split, *, count: int, classes: Sequence[Any] | None = None,
               group: Group | None = None, predictions: pd.DataFrame | None = None,
               fonts: Sequence[str | Path] | None = None, seed: int = 0,
               screen_on: pd.Index | None = None, candidates: int = CANDIDATES,
               progress: Progress | None = None) -> SynthResult:
    """Render ``count`` images of each class's character, matched to the train images.

    Parameters
    ----------
    dataset, split
        An image dataset whose classes are single characters, and its split:
        the intensity statistics come from the source's train examples only.
    count
        Images per class (>= 1).
    classes
        The classes to draw (default: every class, or ``group``'s).
    group
        A stored group: its classes get the glyphs (:func:`group_classes`).
    predictions
        A run's predictions (``Iteration.predictions()``): with them, a group's
        classes are those of its misclassified val examples.
    fonts
        TrueType files (default: matplotlib's text fonts, :data:`TEXT_FONTS`).
    seed
        Seeds the one random generator: the same call draws the same images.
    screen_on
        The real train examples whose model screens the glyphs (the reference
        run's train rows: a run on a share of train is helped by glyphs its
        own data reads, not by what the rest of train knows). Default: the
        source's train examples.
    candidates
        Glyphs drawn per glyph kept (:data:`CANDIDATES`; 1 keeps every one).
    """
    chars = check_request(dataset, count=count)
    count = int(count)
    candidates = _checked_count(candidates, name="candidates")
    if group is not None and classes is None:
        classes = group_classes(group, dataset, split, predictions=predictions)
    chosen = _checked_classes(dataset, classes)
    paths = _font_paths(fonts)
    reference = _reference(dataset, split)
    rng = np.random.default_rng(seed)
    shape = reference["shape"]
    images, labels, names, skipped = [], [], [], []
    n = count * candidates
    advance = counter(progress, "glyphs", n * len(chosen))
    for label in chosen:
        usable = []
        for path in paths:
            reason = glyph_missing(path, chars[label])
            if reason is None:
                usable.append(path)
            else:
                skipped.append(Skipped(path.stem, label, reason))
        if not usable:
            raise DataError(f"no font draws class {label!r} (character {chars[label]!r})",
                            hint=f"skipped: {', '.join(p.stem for p in paths)}; give fonts "
                                 "that have the character")
        order = [usable[i % len(usable)] for i in rng.permutation(max(n, len(usable)))]
        drawn = np.empty((n, shape[1], shape[2]))
        for i in range(n):
            drawn[i] = render(order[i], chars[label], (shape[1], shape[2]), rng)
            advance()
        real = reference["pixels"](label)
        like = rng.integers(0, len(real), n)  # the real image each glyph takes after
        images.append(np.stack([match_intensity(d[None], real[j][None], rng=rng)[0]
                                for d, j in zip(drawn, like, strict=True)]))
        labels += [label] * n
        names += [p.stem for p in order[:n]]
    stacked = np.concatenate(images)[:, None].repeat(shape[0], axis=1)
    labels_, names_ = np.asarray(labels), np.asarray(names)
    n_screen = 0
    if candidates > 1:
        X, y = reference["rows"](screen_on)
        n_screen = len(y)
        keep = screen(stacked.reshape(len(stacked), -1), labels_, X, y, count=count, seed=seed)
        stacked, labels_, names_ = stacked[keep], labels_[keep], names_[keep]
    return SynthResult(stacked, labels_, names_, chosen, skipped,
                       group=None if group is None else group.key, candidates=candidates,
                       n_screen=n_screen)


def screen(glyphs: np.ndarray, labels: np.ndarray, X: np.ndarray, y: np.ndarray, *,
           count: int, seed: int = 0) -> np.ndarray:
    """The indices of the ``count`` glyphs per class that a model of ``(X, y)`` reads most
    surely as their class, in the order of ``labels``' classes.

    ``glyphs`` (n, features) and ``X`` (m, features) are pixels in the same
    units. The model is an RBF SVC with Platt probabilities: it needs no
    tuning and learns from a hundred examples. Without two classes of at least
    :data:`MIN_SCREEN` examples there is nothing to learn, and the first
    ``count`` glyphs of each class are kept.
    """
    from sklearn.svm import SVC

    classes, counts = np.unique(y, return_counts=True) if len(y) else ([], [])
    known = classes[counts >= MIN_SCREEN] if len(classes) else classes
    sure = np.zeros(len(glyphs))
    if len(known) >= 2:
        inside = np.isin(y, known)
        with warnings.catch_warnings():
            # scikit-learn 1.9 deprecates probability=True (removed in 1.11); its pairwise
            # Platt scaling is what CANDIDATES was measured with
            warnings.simplefilter("ignore", FutureWarning)
            model = SVC(probability=True, random_state=seed).fit(X[inside], y[inside])
        column = {c: i for i, c in enumerate(model.classes_.tolist())}
        proba = model.predict_proba(glyphs)
        own = [column.get(c, -1) for c in labels.tolist()]
        sure = np.where(np.asarray(own) >= 0, proba[np.arange(len(glyphs)), own], 0.0)
    keep = []
    for label in dict.fromkeys(labels.tolist()):
        at = np.flatnonzero(labels == label)
        keep.append(at[np.argsort(-sure[at], kind="stable")[:count]])
    return np.concatenate(keep)


def trained_rows(dataset: Dataset, iteration: Iteration | None) -> pd.Index | None:
    """The source examples ``iteration`` was trained on, to screen its glyphs with.

    None (screen with the whole train part) without a run, or when its
    predictions are gone or name none of the current source rows.
    """
    if iteration is None:
        return None
    try:
        stored = iteration.predictions()
    except LoopmlError:
        return None
    trained = set(stored.loc[stored["part"] == "train", "id"].astype(str))
    source = dataset.ids[(dataset.origin == "source").to_numpy()]
    rows = source[source.astype(str).isin(trained)]
    return rows if len(rows) else None


def check_request(dataset: Dataset, *, count: Any) -> dict[Any, str]:
    """The checks that need no fonts: ``count``, images, one character per class.

    Returns each class's character. Run first, so a bad request fails at once.
    """
    _checked_count(count)
    if modality(dataset) != "image":
        raise DataError(f"dataset '{dataset.name}' holds no images: synthesize draws images of "
                        "characters", hint="use it on an image project (e.g. 'loopml init p "
                                           "--data digits'); tables have no glyphs to draw")
    return characters(dataset.classes)


def characters(classes: Sequence[Any]) -> dict[Any, str]:
    """Each class's character; a LoopmlError naming the classes that are not one character."""
    if not classes:
        raise DataError("the project has no classes: synthesize draws the character of each "
                        "class", hint="synthesize needs a classification target")
    chars = {c: str(c) for c in classes}
    bad = [c for c, ch in chars.items()
           if len(ch) != 1 or not ch.isprintable() or ch.isspace()]
    if bad:
        shown = ", ".join(repr(str(c)) for c in bad[:SHOWN])
        raise DataError(f"class(es) {shown}{' ...' if len(bad) > SHOWN else ''} are not single "
                        "characters: synthesize draws each class's character in fonts",
                        hint="it suits character recognition (digits, letters); for other "
                             "images add data with 'loopml augment' or 'loopml collect'")
    return chars


def group_classes(group: Group, dataset: Dataset, split: Split, *,
                  predictions: pd.DataFrame | None = None) -> list:
    """The classes a group's glyphs should be: where the group fails, most errors first.

    A confused pair gives its true class. Another group gives the classes of
    its misclassified val members (with ``predictions``), else of its val
    members, else of its train members.
    """
    if isinstance(group, PairGroup):
        return [c for c in dataset.classes if str(c) == str(group.true)]
    val = split.ids("val")
    predicted = None
    if predictions is not None and "y_pred" in predictions.columns:
        val_rows = predictions[predictions["part"] == "val"].set_index("id")
        val = val.intersection(val_rows.index)
        predicted = val_rows.loc[val, "y_pred"].to_numpy()
    for ids, wrong in ((val, predicted), (split.ids("train"), None)):
        if not len(ids):
            continue
        inside = membership(group, Rows.of(dataset, ids))
        truth = dataset.y(ids)
        picks = truth[inside & (truth != wrong)] if wrong is not None else truth[inside]
        if wrong is not None and not len(picks):
            picks = truth[inside]
        if len(picks):
            values, counts = np.unique(picks, return_counts=True)
            return [v.item() if hasattr(v, "item") else v for v in values[np.argsort(-counts)]]
    raise DataError(f"group '{group.key}' has no examples in val or train: there is no class "
                    "to synthesize for", hint="pick another group ('loopml errors' ranks them)")


# ---------------------------------------------------------------- glyphs


def default_fonts() -> list[Path]:
    """matplotlib's text fonts that exist in this installation."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / f"{name}.ttf" for name in TEXT_FONTS if (folder / f"{name}.ttf").exists()]


def glyph_missing(font: str | Path, char: str) -> str | None:
    """Why ``font`` cannot draw ``char`` ("draws nothing", "draws its missing-glyph box"),
    or None when it draws it."""
    drawn = _plain_glyph(str(font), char)
    if not drawn.any():
        return "draws nothing"
    if any(np.array_equal(drawn, _plain_glyph(str(font), m)) for m in MISSING):
        return "draws its missing-glyph box"
    return None


@lru_cache(maxsize=1024)
def _plain_glyph(font: str, char: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("L", (2 * CHECK_SIZE, 2 * CHECK_SIZE))
    ImageDraw.Draw(image).text((CHECK_SIZE, CHECK_SIZE), char, font=_font(font, CHECK_SIZE),
                               fill=255, anchor="mm")
    return np.asarray(image)


@lru_cache(maxsize=256)
def _font(path: str, size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype(path, size)
    except OSError as exc:
        raise DataError(f"font {path} cannot be read: {exc}",
                        hint="give a TrueType (.ttf) or OpenType (.otf) file") from None


def render(font: str | Path, char: str, shape: tuple[int, int],
           rng: np.random.Generator) -> np.ndarray:
    """One (H, W) image in [0, 1] of ``char``: random stroke, rotation, size, place, wobble,
    blur, noise.

    The glyph is drawn large, rotated, cropped to its ink, scaled to fill most
    of the frame's height (as scanned characters are normalised), placed near
    the centre on a canvas a few times the target size, bent by a smooth random
    displacement field (:func:`wobble`), blurred and box-averaged down to ``shape``.
    """
    from PIL import Image, ImageDraw, ImageFilter

    height, width = shape
    scale = max(1, math.ceil(WORK_SIDE / min(height, width)))
    canvas_h, canvas_w = height * scale, width * scale
    size = 4 * CHECK_SIZE // 2
    stroke = int(rng.integers(0, max(1, size // STROKE) + 1))
    glyph = Image.new("L", (3 * size, 3 * size))
    ImageDraw.Draw(glyph).text((3 * size // 2, 3 * size // 2), char, font=_font(str(font), size),
                               fill=255, anchor="mm", stroke_width=stroke, stroke_fill=255)
    glyph = glyph.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    box = glyph.getbbox()
    out = Image.new("L", (canvas_w, canvas_h))
    if box is not None:
        glyph = glyph.crop(box)
        aspect = glyph.width / glyph.height * float(rng.uniform(0.85, 1.15))
        target_h = float(rng.uniform(0.9, 1.0)) * canvas_h
        target_w = aspect * target_h
        if target_w > canvas_w:
            target_h, target_w = target_h * canvas_w / target_w, canvas_w
        size_wh = (max(1, round(target_w)), max(1, round(target_h)))
        glyph = glyph.resize(size_wh, Image.Resampling.LANCZOS)
        free_x, free_y = canvas_w - glyph.width, canvas_h - glyph.height
        x = round(free_x / 2 + rng.uniform(-SHIFT, SHIFT) * free_x / 2)
        y = round(free_y / 2 + rng.uniform(-SHIFT, SHIFT) * free_y / 2)
        out.paste(glyph, (x, y))
        out = Image.fromarray(wobble(np.asarray(out), rng))
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 0.5)) * scale))
    small = out.resize((width, height), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64) / 255.0
    noise = rng.normal(0.0, float(rng.uniform(0, 0.04)), pixels.shape)
    return np.clip(pixels + noise, 0.0, 1.0)


def wobble(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8) bent by a smooth random displacement field, as a hand bends strokes.

    Each pixel moves by at most :data:`WOBBLE` of the side, the field smoothed
    over :data:`WOBBLE_SMOOTH` of it (an elastic distortion, Simard et al. 2003).
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    side = min(image.shape)
    fields = []
    for _ in range(2):
        field_ = gaussian_filter(rng.uniform(-1, 1, image.shape), WOBBLE_SMOOTH * side,
                                 mode="constant")
        fields.append(field_ / max(float(np.abs(field_).max()), 1e-12) * WOBBLE * side)
    rows, cols = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]),
                             indexing="ij")
    bent = map_coordinates(image.astype(np.float64), [rows + fields[0], cols + fields[1]],
                           order=1)
    return np.clip(np.rint(bent), 0, 255).astype(np.uint8)


def match_intensity(drawn: np.ndarray, real: np.ndarray, *,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """``drawn`` ([0, 1]) mapped onto the pixel distribution of ``real`` (dataset units).

    A monotone quantile map over all pixels of the class: the darkest share of
    synthesized pixels becomes the real background, the brightest the real
    ink, so mean, spread and ink fraction follow the real images'. Tied pixels
    (the blank background) map to the real value at their middle rank; each
    value is one the real images hold (digits stay whole numbers 0..16).
    """
    flat = drawn.ravel()
    if rng is not None:  # break ties among inked pixels only by a hair, seeded
        flat = flat + (flat > 0) * rng.uniform(0, 1e-9, flat.shape)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    middle = (np.cumsum(counts) - counts / 2) / len(flat)
    ordered = np.sort(real.ravel())
    at = np.clip((middle * len(ordered)).astype(int), 0, len(ordered) - 1)
    return ordered[at][inverse].reshape(drawn.shape)


# ---------------------------------------------------------------- checks and data


def _reference(dataset: Dataset, split: Split) -> dict[str, Any]:
    """The image shape (C, H, W), per class the source train images' pixels, and the
    flat pixels and labels of given rows (default: the source's train rows)."""
    train = split.ids("train")
    train = train[(dataset.origin.reindex(train) == "source").to_numpy()]
    truth = dataset.y(train)
    column = image_column(dataset)
    if column is None:
        shape = tuple(dataset.image_shape)
    else:
        from PIL import Image

        with Image.open(dataset.frame.loc[train[0] if len(train) else dataset.ids[0],
                                          column]) as first:
            side = max(first.size)
        shape = (images_of(dataset, dataset.ids[:1], size=side).shape[1], side, side)

    def pixels(label: Any) -> np.ndarray:
        ids = train[truth == label]
        if not len(ids):
            raise DataError(f"class {label!r} has no source examples in the train part: there "
                            "is nothing to match the synthesized images to",
                            hint="synthesize other classes (--group) or resplit")
        if column is None:
            return dataset.X(ids).to_numpy(dtype=np.float64)
        return images_of(dataset, ids, size=shape[1]).astype(np.float64) * 255.0

    def rows(ids: pd.Index | None) -> tuple[np.ndarray, np.ndarray]:
        ids = train if ids is None else pd.Index(ids)
        if column is None:
            flat = dataset.X(ids).to_numpy(dtype=np.float64)
        else:
            flat = images_of(dataset, ids, size=shape[1]).astype(np.float64) * 255.0
        return flat.reshape(len(ids), -1), dataset.y(ids)

    return {"shape": shape, "pixels": pixels, "rows": rows}


def _checked_count(count: Any, *, name: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        what = "images per class" if name == "count" else "glyphs drawn per glyph kept"
        example = "--count 20" if name == "count" else f"{CANDIDATES}"
        raise LoopmlError(f"{name} must be a whole number of {what}, at least 1, "
                          f"not {count!r}", hint=f"e.g. {example}")
    return int(count)


def _checked_classes(dataset: Dataset, classes: Sequence[Any] | None) -> list:
    if classes is None:
        return list(dataset.classes)
    by_text = {str(c): c for c in dataset.classes}
    unknown = [c for c in classes if str(c) not in by_text]
    if unknown:
        raise DataError(f"class(es) {', '.join(map(repr, unknown[:SHOWN]))} are not classes of "
                        "the dataset", hint=f"the classes are: {', '.join(by_text)}")
    if not classes:
        raise DataError("no classes to synthesize", hint="name at least one class")
    return list(dict.fromkeys(by_text[str(c)] for c in classes))


def _font_paths(fonts: Sequence[str | Path] | None) -> list[Path]:
    paths = default_fonts() if fonts is None else [Path(f) for f in fonts]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"font file(s) {', '.join(missing)} do not exist",
                        hint="give paths of TrueType files")
    if not paths:
        raise DataError("no fonts to draw with", hint="matplotlib's fonts are missing; "
                                                      "reinstall matplotlib or give fonts")
    return paths


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
