"""The Python API does what the CLI does, with the same names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loopml import LoopmlError, Project


def test_load_train_runs(tmp_path: Path, penguins_csv: Path) -> None:
    Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    project = Project.load(tmp_path / "p")
    first = project.train("linear", reg=0.1)
    second = project.train("gbt", size=8, params={"learning_rate": 0.05})
    assert first.params["reg"] == 0.1
    assert second.params["size"] == 8 and second.params["learning_rate"] == 0.05
    assert [r.run_id for r in Project.load(tmp_path / "p").runs()] == [first.run_id,
                                                                        second.run_id]
    assert project.get_run(second.run_id[:7]).run_id == second.run_id
    stored = json.loads((second.path / "iteration.json").read_text())
    assert stored["data_version"] == project.dataset.version
    assert stored["split_version"] == project.split.version
    assert 0 <= second.error("val") <= 1


def test_unknown_estimator_parameter_is_refused_by_name(tmp_path: Path,
                                                        penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    with pytest.raises(LoopmlError, match=r"no parameter\(s\) \['depth'\]"):
        project.train("gbt", params={"depth": 3})
    assert project.runs() == []


def test_cnn_is_refused_on_a_table_without_images(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    with pytest.raises(LoopmlError, match="needs images"):
        project.train("cnn")
    assert "cnn" not in project.candidates()


def test_run_fits_candidates_in_parallel_workers(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    result = project.run(["linear", "gbt"], n_jobs=2)
    assert [it.architecture for it in result.candidates] == ["linear", "gbt"]
    assert result.best.error("val") == min(it.error("val") for it in result.candidates)
    assert set(result.test_metrics) >= {"test_accuracy"}
    # the test score is kept on the best run only, and its report compares the candidates
    others = [it for it in project.runs() if it.run_id != result.best.run_id]
    assert all(not any(k.startswith("test_") for k in it.metrics) for it in others)
    assert "Candidates compared" in result.report_path.read_text()
    # fitted in workers, predicting here: the stored model reproduces the stored predictions
    model = result.best.model()
    val = project.split.ids("val")
    stored = result.best.predictions().set_index("id").loc[val.astype(str), "y_pred"]
    assert np.array_equal(model.predict(project.dataset.X(val)), stored.to_numpy())
