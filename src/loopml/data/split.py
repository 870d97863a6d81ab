"""The Split: which examples train, which validate, which test.

It is computed once, stored by example id in ``.loopml/split.parquet``, and
reused by every iteration, so candidates are always compared on the same
examples. Examples that appear later (new data) are placed by a seeded hash
of their id, so adding data never moves an old example from one part to
another.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from loopml.atomic import write_parquet_atomic, write_text_atomic
from loopml.data.dataset import Dataset
from loopml.exceptions import DataError
from loopml.scope import SplitSpec

PARTS = ("train", "val", "test")
MIN_PER_CLASS = 3


@dataclass(frozen=True)
class SplitUpdate:
    """What one update of the split did: ids placed and ids gone, per part."""

    added: dict[str, int]
    removed: dict[str, int]
    version_before: str
    version_after: str

    @property
    def changed(self) -> bool:
        return self.version_before != self.version_after

    @property
    def n_added(self) -> int:
        return sum(self.added.values())

    @property
    def n_removed(self) -> int:
        return sum(self.removed.values())

    def describe(self) -> str:
        """One line for a person: where the new examples went, how many left."""
        def counts(by_part: dict[str, int]) -> str:
            return ", ".join(f"{n} {p}" for p, n in by_part.items() if n) or "none"

        return (f"{self.n_added} new example(s) placed by id ({counts(self.added)}), "
                f"{self.n_removed} gone ({counts(self.removed)}); old examples keep their "
                f"part; split {self.version_before} -> {self.version_after}")

    def to_dict(self) -> dict:
        return {"added": dict(self.added), "removed": dict(self.removed),
                "version_before": self.version_before, "version_after": self.version_after}


@dataclass
class Split:
    """Part ('train' / 'val' / 'test') of every example id."""

    parts: pd.Series
    seed: int
    fractions: dict[str, float]
    data_version: str

    def ids(self, part: str) -> pd.Index:
        return self.parts.index[self.parts.to_numpy() == part]

    def counts(self) -> dict[str, int]:
        return {p: int((self.parts == p).sum()) for p in PARTS}

    @property
    def version(self) -> str:
        digest = hashlib.sha256(pd.util.hash_pandas_object(self.parts).to_numpy().tobytes())
        return digest.hexdigest()[:12]

    # ------------------------------------------------------------ building

    @classmethod
    def compute(cls, dataset: Dataset, spec: SplitSpec, *, seed: int) -> Split:
        ids = dataset.ids.to_numpy()
        fractions = {"train": spec.train, "val": spec.val, "test": spec.test}
        if len(ids) < 10:
            raise DataError(f"the data has {len(ids)} examples; a train/val/test split "
                            "needs at least 10")
        labels = dataset.y() if dataset.task == "classification" and spec.stratify else None
        parts = pd.Series("train", index=dataset.ids, name="part")
        pool = np.ones(len(ids), dtype=bool)
        if labels is not None:
            values, counts = np.unique(labels.astype(str), return_counts=True)
            rare = values[counts < MIN_PER_CLASS]
            if len(rare):
                warnings.warn(f"classes {rare.tolist()} have fewer than {MIN_PER_CLASS} "
                              "examples; they go to train only", stacklevel=2)
                pool = ~np.isin(labels.astype(str), rare)
        rest_ids, rest_labels = ids[pool], None if labels is None else labels[pool].astype(str)
        held = spec.val + spec.test
        _, held_ids, _, held_labels = train_test_split(
            rest_ids, rest_ids if rest_labels is None else rest_labels, test_size=held,
            random_state=seed, stratify=rest_labels)
        parts.loc[held_ids] = "val"
        if spec.test > 0:
            _, test_ids = train_test_split(
                held_ids, test_size=spec.test / held, random_state=seed,
                stratify=held_labels if rest_labels is not None else None)
            parts.loc[test_ids] = "test"
        return cls(parts, seed, fractions, dataset.version)

    def update(self, dataset: Dataset) -> tuple[Split, SplitUpdate]:
        """Place new ids by a seeded hash, forget ids no longer in the data.

        Old ids keep their part. The returned :class:`SplitUpdate` says how
        many ids went to each part and how many left, and the split's version
        changes whenever either count is not zero.
        """
        known = self.parts.index.intersection(dataset.ids)
        new = dataset.ids.difference(self.parts.index)
        gone = self.parts.index.difference(dataset.ids)
        parts = self.parts.loc[known]
        placed = pd.Series(self._place(new), index=new, name="part", dtype=object)
        if len(new):
            parts = pd.concat([parts, placed])
        parts = parts.loc[dataset.ids]
        updated = Split(parts, self.seed, self.fractions, dataset.version)
        report = SplitUpdate(
            added={p: int((placed == p).sum()) for p in PARTS},
            removed={p: int((self.parts.loc[gone] == p).sum()) for p in PARTS},
            version_before=self.version, version_after=updated.version)
        return updated, report

    def _place(self, ids: pd.Index) -> list[str]:
        edges = np.cumsum([self.fractions[p] for p in PARTS])
        out = []
        for i in ids:
            h = int(hashlib.sha256(f"{self.seed}:{i}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            out.append(PARTS[int(np.searchsorted(edges, h, side="right").clip(0, 2))])
        return out

    # ------------------------------------------------------------ storage

    def save(self, state_dir: Path) -> None:
        """Write both files atomically: a crash leaves the old split or the new one."""
        state_dir.mkdir(parents=True, exist_ok=True)
        table = self.parts.rename("part").rename_axis("id").reset_index()
        meta = {"seed": self.seed, "fractions": self.fractions,
                "data_version": self.data_version, "version": self.version,
                "counts": self.counts()}
        write_parquet_atomic(table, state_dir / "split.parquet")
        write_text_atomic(state_dir / "split.json", json.dumps(meta, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Split | None:
        table_file, meta_file = state_dir / "split.parquet", state_dir / "split.json"
        if not table_file.exists() or not meta_file.exists():
            return None
        meta = json.loads(meta_file.read_text())
        table = pd.read_parquet(table_file)
        parts = pd.Series(table["part"].to_numpy(), index=pd.Index(table["id"], name="id"),
                          name="part")
        return cls(parts, meta["seed"], meta["fractions"], meta["data_version"])
