"""Groups that travel: a group found on val applies to any rows, with the same meaning.

Built-in traits keep the cut-offs fitted on train, slices select the matching
rows of a pool file, clusters reproduce their members from stored centres,
keys carry no run id, ceilings are exact for every metric, and reports of
today's JSON shape still load as typed evidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, log_loss, mean_squared_error

from loopml import LoopmlError, Project
from loopml.data.images import images_of
from loopml.errors.report import ErrorReport, GroupStat, LabelCheck, Scorer
from loopml.exceptions import DataError
from loopml.groups import (
    ClusterGroup,
    GroupKind,
    PairGroup,
    Predicate,
    PythonTrait,
    Rows,
    Slice,
    SliceGroup,
    TagTrait,
    ThresholdTrait,
    TraitSource,
    group_from_dict,
    membership,
)
from loopml.groups.builtin import image_measures
from loopml.groups.store import GroupStore
from test_errors import _project, _table

IMAGE_TRAITS = {"low_contrast": ("contrast", 0.1), "blurry": ("sharpness", 0.1),
                "thin_strokes": ("ink", 0.1), "thick_strokes": ("ink", 0.9),
                "off_centre": ("offset", 0.9)}


def _parts(project: Project) -> tuple[pd.Index, pd.Index]:
    ids = project.dataset.ids
    return ids.intersection(project.split.ids("train")), ids.intersection(project.split.ids("val"))


def test_builtin_image_traits_keep_their_train_cut_offs(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "d", data="digits", target="label")
    project.train("linear")
    report = project.errors(label_issues=False, cluster_errors=False)
    train, val = _parts(project)
    measures = image_measures(images_of(project.dataset, train))
    groups = project.groups()
    for name, (column, q) in IMAGE_TRAITS.items():
        trait = groups[f"trait:{name}"]
        assert isinstance(trait, ThresholdTrait) and trait.source is TraitSource.BUILTIN
        assert trait.cut == pytest.approx(float(np.quantile(measures[column], q)), abs=1e-12)
        assert trait.n_fitted == len(train) == 1257
        alone = membership(trait, Rows.of(project.dataset, val))
        among = membership(trait, Rows.of(project.dataset, train.append(val)))[len(train):]
        assert (alone == among).all(), name
        stat = report.group(trait.key)
        assert stat.size == int(alone.sum()) and stat.definition == trait
        # at least a tenth of train is in it, by construction of the cut-off (ink shares
        # of 8x8 digits are multiples of 1/64, so ties there take in more)
        in_train = membership(trait, Rows.of(project.dataset, train)).mean()
        assert 0.1 <= in_train <= (0.25 if column == "ink" else 0.11), (name, in_train)
    stored = json.loads((project.state_dir / "groups" / "groups.json").read_text())
    cut = next(g["definition"]["cut"] for g in stored["groups"]
               if g["definition"]["key"] == "trait:low_contrast")
    assert cut == groups["trait:low_contrast"].cut
    # a later analysis reuses the stored cut-offs and their first sighting
    second = project.train("linear", reg=10.0)
    again = project.errors(second.run_id, label_issues=False, cluster_errors=False)
    assert again.group("trait:low_contrast").definition == groups["trait:low_contrast"]
    entry = GroupStore(project.state_dir).load().entry("trait:low_contrast")
    assert entry.first_run == report.run_id
    loaded = ErrorReport.load(project.get_run(report.run_id).folder)
    assert loaded.group("trait:blurry").definition == groups["trait:blurry"]


def test_built_in_cut_offs_stay_when_train_grows(tmp_path: Path) -> None:
    frame, _ = _table(1000, seed=9, planted_slice=False)
    project = _project(tmp_path, frame.iloc[:600])
    project.train("linear")
    first = project.errors(label_issues=False)
    fitted = project.groups()["trait:outside_training_range"]
    train, _ = _parts(project)
    assert fitted.n_fitted == len(train)
    assert fitted.ranges["x"] == (frame.loc[frame["order"].isin(train), "x"].min(),
                                  frame.loc[frame["order"].isin(train), "x"].max())
    grown = frame.copy()
    grown.loc[600:, "x"] *= 3  # the new rows reach beyond the first train part's range
    grown.to_csv(tmp_path / "orders.csv", index=False)
    project = Project.load(project.root)
    project.train("linear")
    again = project.errors(label_issues=False)
    assert project.groups()["trait:outside_training_range"] == fitted
    assert any(f"fitted on {len(train)} train examples and are kept" in n
               for n in again.notes), again.notes
    assert again.group("trait:outside_training_range").size > \
        first.group("trait:outside_training_range").size


def _pool(n_per_cell: int = 2) -> pd.DataFrame:
    """Unlabelled orders: every shop x channel cell, ``n_per_cell`` rows each."""
    rng = np.random.default_rng(21)
    cells = [(s, c) for s in (f"s{i}" for i in range(5))
             for c in ("web", "app", "phone", "store")] * n_per_cell
    return pd.DataFrame({"order": [f"p{i:04d}" for i in range(len(cells))],
                         "shop": [s for s, _ in cells], "channel": [c for _, c in cells],
                         "x": rng.normal(size=len(cells)), "z": rng.normal(size=len(cells)),
                         "w": rng.normal(size=len(cells))})


def test_a_slice_found_on_val_selects_the_matching_rows_of_a_pool(tmp_path: Path) -> None:
    frame, _ = _table(3000, seed=5, planted_slice=True)
    project = _project(tmp_path, frame)
    legacy = project.state_dir / "errors" / "definitions.json"  # a store of the old format
    legacy.parent.mkdir(parents=True)
    old = Slice((Predicate("shop", "eq", "s1"),))
    legacy.write_text(json.dumps({"slices": [
        {"key": f"slice:{old.key}", "description": old.describe(), "slice": old.to_dict(),
         "first_run": "an-old-run", "first_seen": "2026-01-01T00:00:00+00:00"}]}))
    (project.root / "traits.py").write_text(
        "import loopml\n\n@loopml.trait\ndef negative_w(frame):\n    return frame['w'] < 0\n")
    project = Project.load(project.root)
    first = project.train("linear")
    report = project.errors(label_issues=False)
    planted = report.group(report.slices[0].key)
    assert isinstance(planted.definition, SliceGroup)
    assert {(p.column, p.value) for p in planted.definition.slice.predicates} \
        == {("shop", "s3"), ("channel", "web")}
    _, val = _parts(project)
    assert membership(planted.definition, Rows.of(project.dataset, val)).sum() == planted.size

    path = tmp_path / "pool.csv"
    _pool().to_csv(path, index=False)  # no label column
    pool = pd.read_csv(path)
    expected = ((pool["shop"] == "s3") & (pool["channel"] == "web")).to_numpy()
    mask = project.membership(planted.key, pool)
    assert mask.tolist() == expected.tolist() and mask.sum() == 2
    rows = Rows.from_frame(pool, like=project.dataset, id_column="order")
    assert list(rows.ids[membership(planted.definition, rows)]) == ["p0012", "p0032"]
    # built-in tabular traits use train's ranges and levels on the pool's rows
    odd = pool.copy()
    odd.loc[0, "x"], odd.loc[1, "shop"], odd.loc[2, "w"] = 50.0, "s9", np.nan
    assert np.flatnonzero(project.membership("trait:outside_training_range", odd)).tolist() \
        == [0, 1]
    assert np.flatnonzero(project.membership("trait:has_missing", odd)).tolist() == [2]
    # the user's python trait travels by reference: re-read from traits.py
    negative = group_from_dict(json.loads(json.dumps(project.groups()["trait:negative_w"]
                                                     .to_dict())))
    assert isinstance(negative, PythonTrait)
    assert membership(negative, rows).tolist() == (pool["w"] < 0).tolist()
    # the old store's slice was carried over, re-scored, and kept its first sighting
    assert project.groups().entry(f"slice:{old.key}").first_run == "an-old-run"
    assert f"slice:{old.key}" in {h.key for h in report.history}
    # a second run finds the same slice under the same key: no run id in keys
    second = project.train("linear", seed=1)
    again = project.errors(second.run_id, label_issues=False)
    assert {g.key for g in again.slices} == {g.key for g in report.slices}
    assert all(first.run_id[:8] not in g.key for g in report.groups())
    runs = next(h for h in again.history if h.key == planted.key).runs
    assert [r.run_id for r in runs] == [first.run_id, second.run_id]


def test_groups_refuse_rows_they_cannot_read(tmp_path: Path) -> None:
    frame, _ = _table(600, seed=7, planted_slice=False)
    project = _project(tmp_path, frame)
    pool = _pool(1).drop(columns=["channel"])
    on_label = SliceGroup(Slice((Predicate("label", "eq", "yes"),)))
    with pytest.raises(DataError, match="reads column 'label'") as caught:
        project.membership(on_label, pool)
    assert "cannot be sliced on the label" in caught.value.hint
    with pytest.raises(DataError, match="reads column 'channel'"):
        project.membership(SliceGroup(Slice((Predicate("channel", "eq", "web"),))), pool)
    with pytest.raises(DataError, match="prediction"):
        project.membership(PairGroup("yes", "no"), _pool(1).assign(label="yes"))
    with pytest.raises(LoopmlError, match="no group 'slice:nope'"):
        project.membership("slice:nope", pool)
    tagged = list(project.dataset.ids[:3])
    project.tag(tagged, "odd")
    tag = project.groups()["trait:odd"]
    assert isinstance(tag, TagTrait) and tag.ids == frozenset(tagged)
    assert membership(tag, Rows.of(project.dataset, project.dataset.ids[:5])).tolist() \
        == [True, True, True, False, False]
    with pytest.raises(DataError, match="no tagged ids"):
        membership(TagTrait("odd"), Rows.of(project.dataset, project.dataset.ids[:5]))


def test_a_damaged_group_store_is_named_and_left_alone(tmp_path: Path) -> None:
    frame, _ = _table(600, seed=8, planted_slice=False)
    project = _project(tmp_path, frame)
    project.train("linear")
    store = project.state_dir / "groups" / "groups.json"
    store.parent.mkdir(parents=True)
    store.write_text('{"format": 1, "groups": [{"definition": {"type": "hexagon"}}]}')
    with pytest.raises(DataError, match=r"groups\.json is not a loopml group store") as caught:
        project.errors(label_issues=False)
    assert "unknown group type 'hexagon'" in caught.value.message
    assert store.read_text() == '{"format": 1, "groups": [{"definition": {"type": "hexagon"}}]}'


@pytest.mark.slow
def test_cluster_groups_reproduce_their_members_from_stored_centres(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "d", data="digits", target="label")
    first = project.train("linear", reg=1e5)  # a weak model, so errors cluster
    report = project.errors(label_issues=False)
    assert len(report.clusters) >= 2, report.notes
    _, val = _parts(project)
    rows = Rows.of(project.dataset, val)
    assert report.n_errors <= 200  # every error is listed, so the list marks them all
    is_error = rows.ids.isin([e.id for e in report.errors])
    stored = project.groups()
    for stat in report.clusters:
        assert stat.key.startswith("cluster:") and first.run_id[:8] not in stat.key
        group = stored[stat.key]
        assert isinstance(group, ClusterGroup) and group.centres is None  # not read yet
        assert (project.state_dir / "groups" / group.centres_file).exists()
        mask = membership(group, rows)
        assert group.encoder == "efficientnet-lite0" and group.image_size == 64
        assert int(mask.sum()) == stat.size and int((mask & is_error).sum()) == stat.n_errors
        assert set(stat.examples) <= set(rows.ids[mask])
        assert (mask == membership(stat.definition, rows)).all()  # in memory == from file
    second = project.train("linear", reg=1e5)
    again = project.errors(second.run_id, label_issues=False)
    assert [g.key for g in again.clusters] == [g.key for g in report.clusters]
    assert [g.key for g in again.slices] == [g.key for g in report.slices]


# ---------------------------------------------------------------- ceilings, exactly


def _classified() -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """20 val rows of three classes: 6 wrong; the group holds rows 0-9 (3 wrong)."""
    classes = ["a", "b", "c"]
    y_true = np.array(list("aabbccabcaabbccabcab"))
    y_pred = np.array(list("abbcccabaacbbacabbab"))
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=20)
    for i, p in enumerate(y_pred):  # the predicted class has the largest probability
        j = classes.index(p)
        proba[i, [j, proba[i].argmax()]] = proba[i, [proba[i].argmax(), j]]
    frame = pd.DataFrame({"id": [f"r{i:02d}" for i in range(20)], "y_true": y_true,
                          "y_pred": y_pred, **{f"proba:{c}": proba[:, k]
                                               for k, c in enumerate(classes)}})
    group = np.arange(20) < 10
    return frame, classes, group


def _ceiling(frame: pd.DataFrame, task: str, metric: str, classes: list,
             group: np.ndarray) -> GroupStat:
    scorer = Scorer.from_predictions(frame, task, metric, classes)
    return scorer.group(TagTrait("picked", frozenset(frame["id"][group])), group)


def test_log_loss_ceiling_fixes_the_groups_errors_only() -> None:
    frame, classes, group = _classified()
    y, pred = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
    proba = frame[[f"proba:{c}" for c in classes]].to_numpy()
    fixed = group & (y != pred)
    assert fixed.sum() == 3 and (y != pred).sum() == 6
    better = proba.copy()
    better[fixed] = (np.array(classes)[None, :] == y[fixed, None]).astype(float)
    expected = log_loss(y, proba, labels=classes) - log_loss(y, better, labels=classes)
    stat = _ceiling(frame, "classification", "log_loss", classes, group)
    assert stat.ceiling == pytest.approx(expected, abs=1e-9)
    assert stat.size == 10 and stat.n_errors == 3 and stat.kind is GroupKind.TRAIT
    # the right-but-unsure rows inside are not "errors": fixing them too would gain more
    everything = proba.copy()
    everything[group] = (np.array(classes)[None, :] == y[group, None]).astype(float)
    assert log_loss(y, proba, labels=classes) - log_loss(y, everything, labels=classes) \
        > stat.ceiling + 0.05


def test_f1_macro_ceiling() -> None:
    frame, classes, group = _classified()
    y, pred = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
    fixed_pred = np.where(group, y, pred)
    expected = f1_score(y, fixed_pred, average="macro") - f1_score(y, pred, average="macro")
    stat = _ceiling(frame, "classification", "f1_macro", classes, group)
    assert stat.ceiling == pytest.approx(expected, abs=1e-9)
    assert stat.ceiling != pytest.approx(stat.n_errors / len(frame))  # not accuracy's count


def test_rmse_ceiling() -> None:
    y = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0,
                  5.0, 8.0, 9.0, 7.0, 9.0, 3.0, 2.0, 3.0, 8.0, 4.0])
    pred = y + np.array([0.5, -0.2, 0.0, 1.5, -3.0, 0.1, 0.0, 0.4, -0.6, 2.5,
                         0.3, -0.1, 0.0, 0.2, -4.0, 0.0, 0.7, -0.3, 0.1, 0.05])
    frame = pd.DataFrame({"id": [f"r{i:02d}" for i in range(20)], "y_true": y, "y_pred": pred})
    group = np.isin(np.arange(20), [1, 4, 9, 14, 15])
    expected = np.sqrt(mean_squared_error(y, pred)) \
        - np.sqrt(mean_squared_error(y, np.where(group, y, pred)))
    stat = _ceiling(frame, "regression", "rmse", [], group)
    assert stat.ceiling == pytest.approx(expected, abs=1e-9)
    # by hand: squared residuals sum to 35.0525, 31.29 of it in the group; every row
    # of the group with a residual is fixed, not only the top-tenth "errors"
    assert stat.ceiling == pytest.approx(np.sqrt(35.0525 / 20) - np.sqrt(3.7625 / 20), abs=1e-9)
    assert stat.n_errors == 2  # the two largest residuals (|-3.0|, |-4.0|) of the top tenth


# ---------------------------------------------------------------- reports of today's shape


OLD_REPORT = {  # an errors.json written before groups travelled (penguins, then orders)
    "run_id": "4d9a0c37954848ac8690d8b331ecaf62", "architecture": "linear",
    "task": "classification", "metric": "accuracy", "data_version": "7b0c3c2bfe59",
    "split_version": "0f2c4e1d9a8b", "created": "2026-11-25T14:13:55+00:00", "n_val": 52,
    "n_errors": 1, "error": 0.019230769230769273,
    "errors": [{"id": "ab9940bf2be7", "y_true": "Gentoo", "y_pred": "Adelie",
                "confidence": 0.9942683396115003, "p_true": 0.0035371468971095244,
                "residual": None, "traits": ["has_missing"], "label_issue": True,
                "suggested_label": "Adelie",
                "features": {"island": "Biscoe", "bill_length_mm": None, "year": 2009}}],
    "traits": [{"kind": "trait", "key": "trait:has_missing", "name": "has_missing",
                "description": "has_missing: a feature value is missing", "size": 3,
                "n_errors": 1, "share": 1.0, "rate_inside": 0.3333333333333333,
                "rate_outside": 0.0, "ceiling": 0.019230769230769273, "label_issues": 1,
                "p_value": 0.11538461538461538, "source": "builtin", "extra": {}}],
    "pairs": [{"kind": "pair", "key": "pair:Gentoo->Adelie", "name": "Gentoo → Adelie",
               "description": "true Gentoo, predicted Adelie", "size": 1, "n_errors": 1,
               "share": 1.0, "rate_inside": 0.05263157894736842, "rate_outside": 0.0,
               "ceiling": 0.019230769230769273, "label_issues": 1, "p_value": None,
               "source": None, "extra": {"true": "Gentoo", "predicted": "Adelie"}}],
    "slices": [{"kind": "slice", "key": "slice:8148b3f89aca",
                "name": "channel = web AND shop = s3",
                "description": "channel = web AND shop = s3", "size": 21, "n_errors": 21,
                "share": 0.5, "rate_inside": 1.0, "rate_outside": 0.05, "ceiling": 0.035,
                "label_issues": 0, "p_value": 1e-20, "source": None,
                "extra": {"slice": {"predicates": [
                    {"column": "channel", "kind": "eq", "value": "web"},
                    {"column": "shop", "kind": "eq", "value": "s3"}]},
                    "score": 16.615527950310558, "n_tried": 542}}],
    "clusters": [{"kind": "cluster", "key": "cluster:11fccf7e:2", "name": "cluster 2",
                  "description": "label = 8 (61% vs 10%)", "size": 30, "n_errors": 20,
                  "share": 0.2, "rate_inside": 0.66, "rate_outside": 0.3, "ceiling": 0.07,
                  "label_issues": 0, "p_value": 1e-6, "source": None,
                  "extra": {"examples": ["img1", "img2"]}}],
    "label_issues": [{"id": "ab9940bf2be7", "part": "val", "given": "Gentoo",
                      "suggested": "Adelie", "quality": 0.0035371468971095252}],
    "label_check": {"checked": True, "n_checked": 292, "n_found": 1, "folds": 5,
                    "model": "linear", "method": "cleanlab confident learning"},
    "history": [{"key": "trait:has_missing", "kind": "trait", "name": "has_missing",
                 "runs": [{"run_id": "4d9a0c37954848ac8690d8b331ecaf62",
                           "architecture": "linear", "created": "2026-11-25T14:13:51+00:00",
                           "size": 3, "n_errors": 1, "rate": 0.3333333333333333}]}],
    "notes": [], "thumbnails": {}, "modality": "tabular",
    "ranked": ["cluster:11fccf7e:2", "slice:8148b3f89aca", "pair:Gentoo->Adelie",
               "trait:has_missing"],
}


def test_reports_of_todays_shape_load_as_typed_evidence(tmp_path: Path) -> None:
    (tmp_path / "errors.json").write_text(json.dumps(OLD_REPORT))
    report = ErrorReport.load(tmp_path)
    pair, slc, cluster = report.pairs[0], report.slices[0], report.clusters[0]
    assert pair.definition == PairGroup("Gentoo", "Adelie") and pair.kind is GroupKind.PAIR
    assert isinstance(slc.definition, SliceGroup) and slc.definition.key == slc.key
    assert slc.score == pytest.approx(16.6155, abs=1e-4) and slc.n_tried == 542
    assert cluster.definition is None and cluster.examples == ["img1", "img2"]
    assert report.traits[0].source is TraitSource.BUILTIN
    assert report.label_check == LabelCheck(True, None, 292, 1, 5, "linear",
                                            "cleanlab confident learning")
    assert report.history[0].runs[0].size == 3 and report.errors[0].label_issue is True
    assert report.label_issues[0].suggested == "Adelie"
    again = report.to_dict()  # the same keys, each group gaining "definition" only
    assert set(again) == set(OLD_REPORT) | {"clusters_searched"}
    assert again["clusters_searched"] is False  # not known for an old report: not claimed
    for kind in ("traits", "pairs", "slices", "clusters"):
        assert set(again[kind][0]) == set(OLD_REPORT[kind][0]) | {"definition"}
        assert again[kind][0]["extra"] == OLD_REPORT[kind][0]["extra"]
    for key in ("errors", "label_issues", "history", "ranked"):
        assert again[key] == OLD_REPORT[key], key
    # the check gains the judge's evidence; an old one had none: listed, no shares
    assert again["label_check"] == {**OLD_REPORT["label_check"], "withheld": False,
                                    "per_class": []}
    assert again["slices"][0]["definition"]["type"] == "slice"
    (tmp_path / "errors.json").write_text("{\"run_id\": ")
    with pytest.raises(DataError, match="not a readable error report"):
        ErrorReport.load(tmp_path)


def test_error_analysis_can_group_by_origin(tmp_path: Path) -> None:
    """A batch of collected val examples labelled against the rule shows as a slice."""
    frame, _ = _table(3000, seed=8, planted_slice=False)
    project = _project(tmp_path, frame.iloc[:2800])
    batch = frame.iloc[2800:].copy()
    batch["label"] = np.where(batch["label"] == "yes", "no", "yes")  # a careless vendor
    record = project.add_examples(batch.drop(columns=["order"]), origin="collect", part="val")
    project.train("linear")
    report = project.errors(label_issues=False)
    by_origin = [g for g in report.slices
                 if any(p.column == "origin" and p.value == "collect"
                        for p in g.definition.slice.predicates)]
    assert by_origin, [g.name for g in report.slices]
    top = by_origin[0]
    assert top.size <= record.counts["val"] and top.rate_inside > 0.8 > 0.2 > top.rate_outside
    rows = Rows.of(project.dataset, project.split.ids("val"))
    mask = membership(top.definition, rows)
    collected = project.dataset.origin.loc[rows.ids] == "collect"
    assert not (mask & ~collected.to_numpy()).any()  # the group holds collected rows only
