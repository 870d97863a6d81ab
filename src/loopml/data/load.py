"""The one entry point that turns a scope's data spec into the project's Dataset.

It reads the source (:mod:`loopml.data.sources`), applies the scope's column
roles (:func:`loopml.data.dataset.build_dataset`) and joins the examples loopml
added under ``.loopml/examples/`` (:mod:`loopml.data.examples`), each with its
provenance. Kept apart from ``dataset.py`` so the Dataset does not import the
store that extends it.
"""

from __future__ import annotations

from pathlib import Path

from loopml.data.dataset import Dataset, build_dataset
from loopml.data.examples import join_examples
from loopml.data.sources import read_source
from loopml.data.split import read_id_scheme
from loopml.scope import DataSpec


def load_dataset(spec: DataSpec, root: Path, *, task: str | None = None,
                 name: str = "data", state_dir: Path | None = None) -> Dataset:
    """Read the scope's source and build the Dataset (the one entry point).

    With ``state_dir`` (a project's ``.loopml/``), the examples loopml added
    there are joined after the source's rows, with their provenance, and
    content ids are made the way its stored split was made.
    """
    dataset = build_dataset(read_source(spec.source, root), spec, task=task, name=name,
                            id_scheme=read_id_scheme(state_dir))
    if state_dir is None:
        return dataset
    return join_examples(dataset, state_dir)
