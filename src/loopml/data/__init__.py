"""Data: where examples come from (sources, and the examples loopml added with
their provenance), what they are (Dataset), and how they are divided once and
for all (Split)."""

from loopml.data.dataset import Dataset
from loopml.data.load import load_dataset
from loopml.data.provenance import ActionRecord, Origin
from loopml.data.split import Split

__all__ = ["ActionRecord", "Dataset", "Origin", "Split", "load_dataset"]
