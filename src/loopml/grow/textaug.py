"""Text transforms for augmentation: character typos, word drop, word swap, case.

Each transform takes a text and a magnitude (the share of characters or words
it touches) and draws from a seeded ``numpy`` generator, so a seed gives the
same texts. Missing texts stay missing. They imitate what text met in use
looks like: typed in a hurry (typos), shortened (dropped words), reordered,
shouted or lower-cased. :mod:`loopml.grow.tabular` applies them to the text
columns of new rows and checks, per class, that they keep the label.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from loopml.grow.transforms import TransformSpec

TEXT_TRANSFORMS: dict[str, TransformSpec] = {s.name: s for s in (
    TransformSpec("typo", 0.05, "share of characters", "typing slips: swapped, dropped or "
                  "repeated characters", 0.0, 0.5),
    TransformSpec("word_drop", 0.1, "share of words", "shortened or clipped texts", 0.0, 0.6),
    TransformSpec("word_swap", 0.1, "share of words", "words in another order", 0.0, 1.0),
    TransformSpec("case", 0.2, "share of words", "SHOUTED, lower-cased or Title Case words",
                  0.0, 1.0),
)}
AUTO_TEXT = (("typo", 0.03), ("word_drop", 0.05), ("word_swap", 0.05))  # a mild mix


def _typo(text: str, magnitude: float, rng: np.random.Generator) -> str:
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if c.isalpha() and rng.random() < magnitude:
            kind = rng.integers(3)
            if kind == 0 and i + 1 < len(chars):  # swap with the next character
                out += [chars[i + 1], c]
                i += 2
                continue
            if kind == 1:  # drop
                i += 1
                continue
            out += [c, c]  # repeat
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _word_drop(text: str, magnitude: float, rng: np.random.Generator) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= magnitude]
    if not kept and words:  # never an empty text
        kept = [words[int(rng.integers(len(words)))]]
    return " ".join(kept)


def _word_swap(text: str, magnitude: float, rng: np.random.Generator) -> str:
    words = text.split()
    i = 0
    while i + 1 < len(words):
        if rng.random() < magnitude:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 2
        else:
            i += 1
    return " ".join(words)


def _case(text: str, magnitude: float, rng: np.random.Generator) -> str:
    changes = (str.upper, str.lower, str.title)
    return " ".join(changes[int(rng.integers(3))](w) if rng.random() < magnitude else w
                    for w in text.split())


_FUNCTIONS: dict[str, Callable[[str, float, np.random.Generator], str]] = {
    "typo": _typo, "word_drop": _word_drop, "word_swap": _word_swap, "case": _case}


def apply_text_transform(name: str, texts: pd.Series, magnitude: float | None = None, *,
                         rng: np.random.Generator) -> pd.Series:
    """``texts`` with transform ``name`` at ``magnitude`` (None: its default); NaN kept."""
    spec = TEXT_TRANSFORMS[name]
    share = spec.default if magnitude is None else float(magnitude)
    function = _FUNCTIONS[name]
    return pd.Series([t if not isinstance(t, str) else function(t, share, rng) for t in texts],
                     index=texts.index, dtype=object)
