"""Nothing lost when loopml processes run at once, nothing left when one is killed (issue 10).

Real CLI processes on a real project: eight ``loopml tag`` at once all land, two
first trainings on a fresh project are both recorded, a SIGKILLed training's
RUNNING run is marked failed and its folder tidied the next time the project is
opened (a live run never is), and parallel workers exit with their parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopml import Project
from loopml.groups.tags import TagStore
from loopml.track import OWNER_FILE, RUNS_DIR


def _popen(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "loopml.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _mlflow_status(project: Project, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=project.tracker.tracking_uri).get_run(run_id).info.status


@pytest.fixture
def project(tmp_path: Path, penguins_csv: Path) -> Project:
    return Project.init(tmp_path / "p", data=str(penguins_csv), target="species")


@pytest.mark.slow  # 8 processes importing loopml: ~20 s on 2 busy cores
def test_eight_tags_at_once_are_all_stored(tmp_path: Path, project: Project) -> None:
    ids = [str(i) for i in project.dataset.ids[:8]]
    processes = [_popen("tag", ids[k], f"trait{k}", "-p", "p", cwd=tmp_path) for k in range(8)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    stored = TagStore(project.state_dir).by_trait()
    assert stored == {f"trait{k}": {ids[k]} for k in range(8)}


@pytest.mark.slow  # two trainings at once: ~20 s on 2 busy cores
def test_two_first_trainings_at_once_are_both_recorded(tmp_path: Path, project: Project) -> None:
    assert not (project.state_dir / "mlflow.db").exists()  # the store is made by the trainings
    processes = [_popen("train", "--arch", "linear", "-p", "p", cwd=tmp_path) for _ in range(2)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    listed = subprocess.run([sys.executable, "-m", "loopml.cli", "runs", "-p", "p", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    run_ids = {run["run_id"] for run in json.loads(listed.stdout)}
    assert len(run_ids) == 2
    assert {_mlflow_status(project, r) for r in run_ids} == {"FINISHED"}
    assert not list((project.state_dir / RUNS_DIR).glob(f"*/{OWNER_FILE}"))


def test_killed_training_is_marked_failed_and_tidied_when_the_project_is_opened(
        tmp_path: Path, project: Project, capsys) -> None:
    runs_root = project.state_dir / RUNS_DIR
    whole = project.train("linear", report=False)
    process = _popen("train", "--arch", "linear", "-p", "p", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(runs_root.glob(f"*/{OWNER_FILE}")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    (folder,) = [f for f in runs_root.iterdir() if f.name != whole.run_id]
    assert _mlflow_status(project, folder.name) == "RUNNING"
    # leftovers of dead writers, and the files of a live one that must stay
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_tmp = project.state_dir / f".split.parquet.{dead.stdout.strip()}-abc123.tmp"
    live_tmp = project.state_dir / f".tags.json.{os.getpid()}-abc123.tmp"
    unlisted = project.state_dir / "examples" / "augment-0badc0de.parquet"
    for path in (dead_tmp, live_tmp, unlisted):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
    dead_model = whole.folder / f".model.{dead.stdout.strip()}-xyz789.tmp"
    (dead_model / "model.pkl").parent.mkdir()
    (dead_model / "model.pkl").write_bytes(b"half")
    capsys.readouterr()

    Project.load(tmp_path / "p")

    err = capsys.readouterr().err
    assert "1 run(s) whose process died marked failed" in err and folder.name[:8] in err, err
    assert _mlflow_status(project, folder.name) == "FAILED"
    assert not folder.exists() and not dead_tmp.exists() and not unlisted.exists()
    assert not dead_model.exists() and live_tmp.exists()
    assert [it.run_id for it in Project.load(tmp_path / "p").runs()] == [whole.run_id]
    assert _mlflow_status(project, whole.run_id) == "FINISHED"
    Project.load(tmp_path / "p")  # nothing left to tidy: nothing said
    assert "tidied" not in capsys.readouterr().err


def test_a_live_run_is_never_tidied(tmp_path: Path, project: Project, capsys) -> None:
    with project.tracker.run(name="live") as run:
        owner = run.local_dir.parent / OWNER_FILE
        assert json.loads(owner.read_text())["pid"] == os.getpid()
        os.utime(run.local_dir.parent, (0, 0))  # old, but its owner lives
        reopened = Project.load(tmp_path / "p")
        assert run.local_dir.exists() and reopened.tracker.stale_runs() == []
        assert _mlflow_status(project, run.run_id) == "RUNNING"
    assert _mlflow_status(project, run.run_id) == "FINISHED" and not owner.exists()
    assert "tidied" not in capsys.readouterr().err


def test_damaged_local_store_names_the_file_not_tracking_uri(cli, penguins_csv: Path) -> None:
    assert cli("init", "p", "--data", penguins_csv, "--target", "species").exit_code == 0
    first = cli("train", "-p", "p", "--arch", "linear")
    assert first.exit_code == 0, first.output
    Path("p/.loopml/mlflow.db").write_bytes(b"this is not a database" * 100)
    result = cli("train", "-p", "p", "--arch", "linear")
    assert result.exit_code == 2
    assert "mlflow.db" in result.output and "damaged or not writable" in result.output
    assert "tracking_uri" not in result.output and "Traceback" not in result.output
    listed = cli("runs", "-p", "p", "--json")  # the run folders still answer
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 1


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_parallel_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = ("import os, pathlib, time\nfrom loopml.parallel import parallel_map\n"
              "def busy(k):\n"
              "    pathlib.Path(f'busy-{os.getpid()}').touch()\n"
              "    time.sleep(60)\n"
              "list(parallel_map(busy, range(4), n_jobs=2))\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = [p for p in _children(parent.pid) if b"popen_loky" in _cmdline(p)]
        assert len(workers) == 2
        while len(list(tmp_path.glob("busy-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # wait until both are busy in a task, as in a long fit
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "loky workers outlived their parent"
    finally:
        for pid in [parent.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
