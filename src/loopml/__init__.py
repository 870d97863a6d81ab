"""loopml: the iterative loop of machine-learning development, on your own data."""

from loopml.exceptions import LoopmlError
from loopml.groups import trait
from loopml.project import Project

__all__ = ["LoopmlError", "Project", "trait"]
__version__ = "0.1.0"
