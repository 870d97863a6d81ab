"""The user's traits as groups: declared in loopml.yaml, written in Python, tagged by hand.

- ``scope``: predicates declared under ``traits:`` in loopml.yaml
  (:class:`ScopeTrait`, self-contained: its spec is data);
- ``python``: functions in the project's ``traits.py`` marked with
  :func:`trait` (:class:`PythonTrait`, stored by reference: the function's
  name and file, called again on whatever rows it is applied to);
- ``tag``: ids a person tagged (``loopml tag ID TRAIT``; :class:`TagTrait`,
  stored by reference: a row is in it when its id is among the tagged ids).

Built-in traits (fitted on train) are in :mod:`loopml.groups.builtin`.

A function trait takes the examples' table (indexed by id, with features,
target and metadata) and may also ask for ``images`` ((n, C, H, W) in [0, 1])
or ``texts`` by naming those parameters::

    import loopml

    @loopml.trait(description="the reviewer's text mentions a refund")
    def refund(frame):
        return frame["review"].str.contains("refund", case=False)

The file is the user's code, so loopml guards every moment it runs (the
import, the scan for marked functions, each call): a time limit
(``traits_timeout`` in loopml.yaml, checked between Python bytecodes, so one
long call into C code such as a huge matrix product ends only when it
returns), ``print`` sent to stderr so ``--json`` output stays one document,
and ``sys.exit`` turned into an error naming the file and function. Ctrl-C is
let through; ``os._exit`` cannot be caught.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import inspect
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.exceptions import DataError, LoopmlError, ScopeError
from loopml.groups.group import Group, TraitGroup, TraitSource
from loopml.groups.tags import check_trait_name
from loopml.scope import TraitSpec

if TYPE_CHECKING:
    from loopml.groups.rows import Rows

_MARK = "__loopml_trait__"
DEFAULT_TIMEOUT = 60.0  # seconds; the default of ``traits_timeout`` in loopml.yaml


class TraitStopped(LoopmlError):
    """The user's trait code ran out of time or exited; it is not a wrong input to retry."""


# ---------------------------------------------------------------- running user code


class _TimeUp(BaseException):
    """Raised inside the user's code when its time is up.

    A BaseException, so an ``except Exception`` in the user's code does not
    swallow it.
    """


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_TimeUp` in the code run inside after ``seconds``.

    A SIGALRM timer: signals reach only the main thread, so elsewhere (and
    where the platform has no ``setitimer``) the code runs without a limit.
    A timer set by someone else is restored, less the time spent here.
    """
    if seconds is None or not hasattr(signal, "setitimer") \
            or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, ring)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        try:  # the timer fires once: if it fires in here, the inner block still runs
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)
            if outer:
                signal.setitimer(signal.ITIMER_REAL,
                                 max(outer - (time.monotonic() - start), 1e-3))


def _line_in(exc: BaseException, file: Path | None) -> str:
    """' at traits.py line N': the last line of ``file`` that ``exc`` passed through."""
    if file is None:
        return ""
    target = file.resolve()

    def ours(name: str | None) -> bool:
        return bool(name) and Path(name).resolve() == target

    line = exc.lineno if isinstance(exc, SyntaxError) and ours(exc.filename) else None
    tb = exc.__traceback__
    while tb is not None:
        if ours(tb.tb_frame.f_code.co_filename):
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" at {file.name} line {line}" if line else ""


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send the user's output to stderr, at both levels: ``sys.stdout`` and file descriptor 1.

    ``print`` goes through ``sys.stdout``; ``os.write(1, ...)``, a subprocess
    or a C library write to descriptor 1 directly. Either would land before
    the JSON document of ``--json``. Where descriptor 1 cannot be moved (no
    such descriptor, an unusual host), only ``sys.stdout`` is.
    """
    import os

    saved = None
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError, AttributeError):
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def _user_code(what: str, file: Path | None, timeout: float | None) -> Iterator[None]:
    """Run the user's code: within ``timeout``, its prints on stderr, its exits as errors.

    ``what`` names the code in the messages ("importing trait file ...",
    "trait 'x' (function f in traits.py)"). Other exceptions pass through
    for the caller to explain.
    """
    try:
        with _stdout_to_stderr(), _time_limit(timeout):
            yield
    except _TimeUp as exc:
        raise TraitStopped(
            f"{what} did not finish within {timeout:g} s (stopped{_line_in(exc, file)})",
            hint=f"look for an endless loop there; if it is only slow, raise traits_timeout "
                 f"in loopml.yaml (now {timeout:g} s), e.g. traits_timeout: {4 * timeout:g}"
        ) from None
    except SystemExit as exc:
        raise TraitStopped(
            f"{what} exited{_line_in(exc, file)} (SystemExit: {exc.code!r}) instead of "
            "returning", hint="a trait returns one yes/no per example; to report a "
            "problem, raise an exception with a message instead of calling exit") from None


# ---------------------------------------------------------------- python traits


def trait(name: str | Callable | None = None, *, description: str | None = None):
    """Mark a function as a trait; usable bare (``@trait``) or with options."""

    def mark(fn: Callable) -> Callable:
        label = name if isinstance(name, str) else fn.__name__
        try:
            check_trait_name(label)  # reports, tables and MLflow tags show it whole
        except DataError as exc:
            code = getattr(fn, "__code__", None)
            where = (f" ({Path(code.co_filename).name} line {code.co_firstlineno})"
                     if code else "")
            raise ScopeError(f"@loopml.trait on function {getattr(fn, '__name__', fn)}{where}: "
                             f"{exc.message}", hint=exc.hint) from None
        doc = (fn.__doc__ or "").strip().splitlines()
        setattr(fn, _MARK, {"name": label, "description": description or
                            (doc[0] if doc else "")})
        return fn

    return mark(name) if callable(name) else mark


def trait_info(fn: Callable) -> dict[str, str]:
    """The name and description :func:`trait` gave ``fn``."""
    return getattr(fn, _MARK)


def load_trait_functions(file: Path, *, timeout: float | None = DEFAULT_TIMEOUT
                         ) -> list[Callable]:
    """The marked functions of a Python file, in the order they are defined.

    Importing runs the user's code, guarded (see the module's docstring):
    ``timeout`` seconds for the import and the scan together; None: no limit.
    """
    spec = importlib.util.spec_from_file_location(f"loopml_traits_{abs(hash(file))}", file)
    if spec is None or spec.loader is None:
        raise ScopeError(f"cannot import trait file {file}",
                         hint="traits_module in loopml.yaml must name a .py file")
    module = importlib.util.module_from_spec(spec)
    try:
        with _user_code(f"importing trait file {file}", file, timeout):
            spec.loader.exec_module(module)
            found = [v for v in vars(module).values() if callable(v) and hasattr(v, _MARK)]
            return sorted(found, key=lambda f: (getattr(f, "__code__", None) and
                          f.__code__.co_firstlineno) or 0)
    except Exception as exc:  # the user's code: report what broke and where
        if isinstance(exc, LoopmlError):
            raise
        raise ScopeError(f"importing trait file {file} failed{_line_in(exc, file)}: "
                         f"{type(exc).__name__}: {exc}",
                         hint="fix the file, or set traits_module: false in loopml.yaml to "
                              "use no Python traits") from exc


def call_trait(fn: Callable, frame: pd.DataFrame, inputs: dict[str, Callable[[], Any]],
               file: Path | None, *, timeout: float | None = DEFAULT_TIMEOUT) -> np.ndarray:
    """Call a user's trait function on ``frame``; one yes/no per row, or a clear error.

    The call is guarded (see the module's docstring): ``timeout`` seconds,
    None: no limit.
    """
    info = trait_info(fn)
    where = f" in {file.name}" if file else ""
    wanted = inspect.signature(fn).parameters
    kwargs = {k: inputs[k]() for k in wanted if k in inputs}
    what = f"trait '{info['name']}' (function {fn.__name__}{where})"
    try:
        with _user_code(what, file, timeout):
            mask = np.asarray(fn(frame, **kwargs))
    except TraitStopped:
        raise
    except Exception as exc:  # the user's code
        raise LoopmlError(f"{what} failed{_line_in(exc, file)}: {type(exc).__name__}: {exc}",
                          hint="it receives the examples' table indexed by id"
                          + (f" and {', '.join(inputs)} if it names them" if inputs else "")
                          ) from exc
    if mask.shape != (len(frame),):
        raise LoopmlError(f"trait '{info['name']}' (function {fn.__name__}{where}) returned "
                          f"shape {mask.shape}; expected one yes/no per example "
                          f"({len(frame)},)")
    try:
        return pd.Series(mask).fillna(False).astype(bool).to_numpy()
    except (TypeError, ValueError):
        raise LoopmlError(f"trait '{info['name']}' (function {fn.__name__}{where}) returned "
                          f"values that are not yes/no ({mask.dtype})") from None


@dataclass(frozen=True)
class PythonTrait(TraitGroup):
    """A ``@loopml.trait`` function, by reference: its trait name, function name and file."""

    trait_name: str
    function: str
    file: str
    about: str = ""
    fn: Callable | None = field(default=None, compare=False, repr=False)
    timeout: float | None = field(default=DEFAULT_TIMEOUT, compare=False, repr=False)

    type_name = "python"
    source = TraitSource.PYTHON

    @classmethod
    def of(cls, fn: Callable, file: Path, *, timeout: float | None = DEFAULT_TIMEOUT
           ) -> PythonTrait:
        info = trait_info(fn)
        return cls(info["name"], fn.__name__, str(file), info["description"] or fn.__name__,
                   fn, timeout)

    @property
    def name(self) -> str:
        return self.trait_name

    @property
    def description(self) -> str:
        return self.about

    def _function(self) -> Callable:
        if self.fn is not None:
            return self.fn
        path = Path(self.file)
        if not path.exists():
            raise ScopeError(f"trait '{self.name}' is defined in {path}, which is gone",
                             hint="restore the file, or drop the trait")
        found = [f for f in load_trait_functions(path, timeout=self.timeout)
                 if trait_info(f)["name"] == self.name]
        if not found:
            raise ScopeError(f"trait '{self.name}' is no longer defined in {path}",
                             hint=f"it was function {self.function}")
        object.__setattr__(self, "fn", found[0])
        return found[0]

    def _members(self, rows: Rows) -> np.ndarray:
        return call_trait(self._function(), rows.frame, rows.inputs(), Path(self.file),
                          timeout=self.timeout)

    def _fields(self) -> dict[str, Any]:
        return {"function": self.function, "file": self.file}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> PythonTrait:
        return cls(data["name"], data["function"], data["file"], data.get("description", ""))


# ---------------------------------------------------------------- scope traits


def _column(frame: pd.DataFrame, spec: TraitSpec) -> pd.Series:
    if spec.column not in frame.columns:
        columns = [str(c) for c in frame.columns]
        close = difflib.get_close_matches(str(spec.column), columns, n=1)
        tip = f" Did you mean '{close[0]}'?" if close else ""
        raise ScopeError(f"trait '{spec.name}' in loopml.yaml names column '{spec.column}', "
                         f"which the data does not have.{tip}",
                         hint=f"the columns are: {', '.join(columns)}")
    return frame[spec.column]


def evaluate_spec(spec: TraitSpec, frame: pd.DataFrame) -> np.ndarray:
    """The examples a declared trait holds for."""
    if spec.where is not None:
        try:
            result = frame.eval(spec.where)
        except pd.errors.UndefinedVariableError as exc:
            name = re.search(r"'([^']+)'", str(exc))
            columns = ", ".join(map(str, frame.columns))
            raise ScopeError(f"trait '{spec.name}' in loopml.yaml: 'where' names "
                             f"{name.group(1) if name else 'a name'!r}, which is not a column",
                             hint=f"the columns are: {columns}") from None
        except Exception as exc:  # a pandas expression the user wrote
            raise ScopeError(f"trait '{spec.name}' in loopml.yaml: 'where' expression "
                             f"{spec.where!r} failed: {exc}") from None
        return pd.Series(result).fillna(False).astype(bool).to_numpy()
    values = _column(frame, spec)
    if spec.matches is not None:
        return values.astype("string").str.contains(spec.matches, regex=True).fillna(False) \
            .to_numpy(dtype=bool)
    if spec.between is not None:
        numbers = pd.to_numeric(values, errors="coerce")
        lo, hi = spec.between
        mask = numbers.notna()
        if lo is not None:
            mask &= numbers >= lo
        if hi is not None:
            mask &= numbers <= hi
        return mask.to_numpy(dtype=bool)
    if spec.isin is not None:
        return (values.isin(spec.isin) | values.astype(str).isin(map(str, spec.isin))) \
            .to_numpy(dtype=bool)
    if spec.missing is not None:
        return (values.isna() == spec.missing).to_numpy(dtype=bool)
    return ((values == spec.equals) | (values.astype(str) == str(spec.equals))) \
        .to_numpy(dtype=bool)


def describe_spec(spec: TraitSpec) -> str:
    """A declared trait in words: its description, or its test."""
    if spec.description:
        return spec.description
    if spec.where is not None:
        return spec.where
    if spec.matches is not None:
        return f"{spec.column} matches /{spec.matches}/"
    if spec.between is not None:
        lo, hi = spec.between
        return f"{spec.column} in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    if spec.isin is not None:
        return f"{spec.column} in {spec.isin}"
    if spec.missing is not None:
        return f"{spec.column} is {'missing' if spec.missing else 'present'}"
    return f"{spec.column} = {spec.equals!r}"


@dataclass(frozen=True)
class ScopeTrait(TraitGroup):
    """A trait declared in loopml.yaml; the spec is the whole definition."""

    spec: TraitSpec

    type_name = "scope"
    source = TraitSource.SCOPE

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return describe_spec(self.spec)

    def _members(self, rows: Rows) -> np.ndarray:
        return evaluate_spec(self.spec, rows.frame)

    def _fields(self) -> dict[str, Any]:
        return {"spec": self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> ScopeTrait:
        return cls(TraitSpec.model_validate(data["spec"]))


# ---------------------------------------------------------------- tags


@dataclass(frozen=True)
class TagTrait(TraitGroup):
    """Rows tagged by hand, by reference: membership is "the id is among ``ids``".

    The ids come from the project's tag store (``Project.groups()`` attaches
    them); a definition read back from JSON has none until then.
    """

    tag: str
    ids: frozenset[str] | None = field(default=None, compare=False, repr=False)

    type_name = "tag"
    source = TraitSource.TAG

    @property
    def name(self) -> str:
        return self.tag

    @property
    def description(self) -> str:
        count = "?" if self.ids is None else len(self.ids)
        return f"tagged by hand ({count} example(s) in all)"

    def _members(self, rows: Rows) -> np.ndarray:
        if self.ids is None:
            raise DataError(f"tag '{self.tag}' has no tagged ids attached",
                            hint="take the group from Project.groups(), which reads the tags")
        return rows.ids.astype(str).isin(list(self.ids))

    def _fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> TagTrait:
        return cls(data["name"])


# ---------------------------------------------------------------- all the user's


@dataclass
class TraitSources:
    """The user's traits, gathered by the project: loopml.yaml, traits.py and tags."""

    specs: list[TraitSpec] = field(default_factory=list)
    functions: list[Callable] = field(default_factory=list)
    function_file: Path | None = None
    tags: dict[str, set[str]] = field(default_factory=dict)
    timeout: float | None = DEFAULT_TIMEOUT  # seconds per call of a function; None: no limit

    def definitions(self) -> list[Group]:
        """Every user trait as a group, in source order (scope, python, tags)."""
        out: list[Group] = [ScopeTrait(spec) for spec in self.specs]
        out += [PythonTrait.of(fn, self.function_file or Path("traits.py"),
                               timeout=self.timeout) for fn in self.functions]
        out += [TagTrait(name, frozenset(map(str, ids))) for name, ids in self.tags.items()]
        return out
