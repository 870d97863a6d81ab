"""Data: where examples come from (sources), what they are (Dataset), and how
they are divided once and for all (Split)."""

from loopml.data.dataset import Dataset, load_dataset
from loopml.data.split import Split

__all__ = ["Dataset", "Split", "load_dataset"]
