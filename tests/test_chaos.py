"""Chaos: 20 SIGKILLs at random moments of train, diagnose, errors and tag (issue 10).

One project (penguins, linear). Each round starts one verb as a real process
and kills it at a seeded random moment; a round sometimes starts a second verb
alongside, so kills land while another process writes. Afterwards, once the
project has been opened (which tidies what the dead left): the runs ``loopml
runs`` lists, the run folders and MLflow's FINISHED runs are the same ids, no
run is RUNNING, no process the test started (or their loky workers) is alive,
and every verb works.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopml import Project
from loopml.track import RUNS_DIR

KILLS = 20
VERBS = {
    "train": ("train", "--arch", "linear"),
    "diagnose": ("diagnose", "--folds", "2", "--no-curves", "--jobs", "2"),
    "errors": ("errors", "--no-label-issues"),
    "tag": ("tag", "{id}", "{trait}"),
}


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (loky workers, their resource trackers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time): a later process with the same pid is not the same one."""
    stat = _proc_stat(pid)
    return None if stat is None else (pid, stat[19])


def _alive(identity: tuple[int, str]) -> bool:
    stat = _proc_stat(identity[0])
    return stat is not None and stat[0] != "Z" and stat[19] == identity[1]


def _working_in(folder: Path) -> set[int]:
    """Live processes (other than this one) whose working directory is under ``folder``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        stat = _proc_stat(int(entry.name))
        if cwd.is_relative_to(folder) and stat is not None and stat[0] != "Z":
            found.add(int(entry.name))
    return found


def _started_work(pid: int, verb: str, runs_root: Path, runs_before: set[Path]) -> bool:
    """The moment worth a kill: a new run folder (train), loky workers (diagnose)."""
    if verb == "train":
        return bool(set(runs_root.iterdir()) - runs_before)
    return any(b"popen_loky" in _cmdline(child) for child in _descendants(pid))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _loopml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopml.cli", *args, "-p", "p"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_twenty_random_kills_leave_a_consistent_project(tmp_path: Path,
                                                        penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    first = project.train("linear")
    ids = [str(i) for i in project.dataset.ids[:50]]
    rng = random.Random(10)
    started: list[subprocess.Popen] = []
    kills: dict[str, int] = {}  # verb: how many were killed while running
    seen: set[tuple[int, str]] = set()  # every process we started or saw below one

    def note(pid: int) -> None:
        for each in (pid, *_descendants(pid)):
            if (identity := _identity(each)) is not None:
                seen.add(identity)

    def start(verb: str) -> subprocess.Popen:
        args = tuple(a.format(id=rng.choice(ids), trait=f"chaos{rng.randrange(5)}")
                     for a in VERBS[verb])
        process = subprocess.Popen([sys.executable, "-m", "loopml.cli", *args, "-p", "p"],
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log)
        started.append(process)
        note(process.pid)
        return process

    runs_root = tmp_path / "p" / ".loopml" / RUNS_DIR
    log = (tmp_path / "stderr.log").open("w")
    lasts = {}  # how long each verb takes whole: kills land within that
    for verb, args in VERBS.items():
        begin = time.monotonic()
        done = _loopml(*(a.format(id=ids[0], trait="whole") for a in args), cwd=tmp_path)
        assert done.returncode == 0, f"{verb}: {done.stderr}"
        lasts[verb] = time.monotonic() - begin
    try:
        order = [verb for verb in sorted(VERBS) for _ in range(KILLS // len(VERBS))]
        for verb in rng.sample(order, len(order)):
            runs_before = set(runs_root.iterdir())
            victim = start(verb)
            bystander = start(rng.choice(sorted(VERBS))) if rng.random() < 0.3 else None
            # half the trains and diagnoses die once their run or workers exist, the
            # other kills at any moment of the verb's life
            targeted = verb in ("train", "diagnose") and rng.random() < 0.5
            deadline = time.monotonic() + (120 if targeted else
                                           rng.uniform(0.1, 1.0) * lasts[verb])
            while time.monotonic() < deadline and victim.poll() is None:
                note(victim.pid)
                if targeted and _started_work(victim.pid, verb, runs_root, runs_before):
                    targeted = False
                    deadline = time.monotonic() + rng.uniform(0.0, 0.5)
                time.sleep(0.05)
            note(victim.pid)
            if victim.poll() is None:
                os.kill(victim.pid, signal.SIGKILL)
                kills[verb] = kills.get(verb, 0) + 1
            victim.wait()
            if bystander is not None:
                bystander.wait(timeout=300)  # it finishes, or fails cleanly, beside the kill
        assert sum(kills.values()) >= KILLS // 2 and len(kills) == len(VERBS), kills
        deadline = time.monotonic() + 15  # orphaned workers notice within seconds
        while time.monotonic() < deadline and [p for p in seen if _alive(p)]:
            time.sleep(0.2)
        assert not [p for p in seen if _alive(p)], "processes outlived the killed verbs"
        assert not _working_in(tmp_path), "a process still works in the project's folder"

        Project.load(tmp_path / "p")  # opening it tidies what the dead left
        log.close()
        listed = _loopml("runs", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        run_ids = {run["run_id"] for run in json.loads(listed.stdout)}
        folders = {f.name for f in (tmp_path / "p" / ".loopml" / RUNS_DIR).iterdir()
                   if not f.name.startswith(".")}
        finished, running = _mlflow_runs(project)
        assert first.run_id in run_ids
        assert run_ids == folders == finished
        assert running == set()

        for verb in (("runs",), ("show", first.run_id[:8]), ("train", "--arch", "linear"),
                     ("diagnose", "--folds", "2", "--no-curves", "--jobs", "2"),
                     ("errors", "--no-label-issues"), ("tag", ids[0], "after-chaos")):
            done = _loopml(*verb, cwd=tmp_path)
            assert done.returncode == 0, f"{verb}: {done.stderr}"
            assert "Traceback" not in done.stderr, f"{verb}: {done.stderr}"
    finally:
        log.close()
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        for identity in seen:
            if _alive(identity):
                os.kill(identity[0], signal.SIGKILL)


def _mlflow_runs(project: Project) -> tuple[set[str], set[str]]:
    """Ids of the experiment's FINISHED runs, and of any run still RUNNING (deleted too)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=project.tracker.tracking_uri)
    experiment = client.get_experiment_by_name(project.scope.name)
    active = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                                max_results=10_000)
    every = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL,
                               max_results=10_000)
    return ({r.info.run_id for r in active if r.info.status == "FINISHED"},
            {r.info.run_id for r in every if r.info.status == "RUNNING"})
