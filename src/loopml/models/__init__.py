"""Model families behind one sklearn-style interface with ``size`` and ``reg`` knobs."""

from loopml.models.base import Architecture
from loopml.models.registry import (
                                    architecture_names,
                                    default_candidates,
                                    get_architecture,
                                    make_architecture,
)

__all__ = ["Architecture", "architecture_names", "default_candidates", "get_architecture",
           "make_architecture"]
