"""The Split: which examples train, which validate, which test.

It is computed once, stored by example id in ``.loopml/split.parquet``, and
reused by every iteration, so candidates are always compared on the same
examples. New rows of the source are placed by a seeded hash of their id, so
adding data never moves an old example from one part to another; examples
loopml added take the part their action recorded (train, always, for
augmented and synthesized ones). The stored files depend only on the parts,
so removing an action's examples writes them back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.atomic import write_parquet_atomic, write_text_atomic
from loopml.data.dataset import Dataset
from loopml.data.sampling import holdout
from loopml.exceptions import DataError
from loopml.scope import SplitSpec

PARTS = ("train", "val", "test")
MIN_PER_CLASS = 3


@dataclass(frozen=True)
class SplitUpdate:
    """What one update of the split did: ids placed and ids gone, per part.

    ``added`` counts every new id; ``recorded`` the part of them that loopml
    added (placed where their action said, not by hash).
    """

    added: dict[str, int]
    removed: dict[str, int]
    version_before: str
    version_after: str
    recorded: dict[str, int] = field(default_factory=dict)

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

        n_recorded = sum(self.recorded.values())
        by_action = (f", {n_recorded} of them added by loopml ({counts(self.recorded)})"
                     if n_recorded else "")
        return (f"{self.n_added} new example(s) placed ({counts(self.added)}){by_action}, "
                f"{self.n_removed} gone ({counts(self.removed)}); old examples keep their "
                f"part; split {self.version_before} -> {self.version_after}")

    def to_dict(self) -> dict:
        return {"added": dict(self.added), "removed": dict(self.removed),
                "recorded": dict(self.recorded),
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
        _, held_ids = holdout(rest_ids, rest_labels, held, seed=seed)
        parts.loc[held_ids] = "val"
        if spec.test > 0:
            label_of = None if rest_labels is None else dict(zip(rest_ids, rest_labels,
                                                                 strict=True))
            held_labels = None if label_of is None else [label_of[i] for i in held_ids]
            _, test_ids = holdout(held_ids, held_labels, spec.test / held, seed=seed)
            parts.loc[test_ids] = "test"
        return cls(parts, seed, fractions, dataset.version)

    def update(self, dataset: Dataset) -> tuple[Split, SplitUpdate]:
        """Place new ids, forget ids no longer in the data.

        New source ids are placed by a seeded hash of the id; ids loopml added
        take the part their action recorded (``dataset.recorded_parts()``).
        Every other id keeps its part, and ids follow the dataset's order, so
        the same data always gives the same split. The returned
        :class:`SplitUpdate` says how many ids went to each part and how many
        left; the split's version changes whenever either count is not zero.
        """
        recorded = dataset.recorded_parts()
        known = self.parts.index.intersection(dataset.ids)
        new = dataset.ids.difference(self.parts.index)
        gone = self.parts.index.difference(dataset.ids)
        by_hash = new.difference(recorded.index)
        placed = pd.Series(self._place(by_hash), index=by_hash, name="part", dtype=object)
        placed = pd.concat([placed, recorded.loc[new.intersection(recorded.index)]])
        parts = pd.concat([self.parts.loc[known].astype(object), placed])
        parts.loc[recorded.index] = recorded  # an added example never leaves its part
        parts = parts.loc[dataset.ids].rename("part")
        updated = Split(parts, self.seed, self.fractions, dataset.version)
        added_here = placed.loc[placed.index.intersection(recorded.index)]
        report = SplitUpdate(
            added={p: int((placed == p).sum()) for p in PARTS},
            removed={p: int((self.parts.loc[gone] == p).sum()) for p in PARTS},
            version_before=self.version, version_after=updated.version,
            recorded={p: int((added_here == p).sum()) for p in PARTS})
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
        # Built from plain lists, so the bytes depend on the ids and parts alone
        # (not on the dtypes the series happened to carry).
        table = pd.DataFrame({"id": [str(i) for i in self.parts.index],
                              "part": [str(p) for p in self.parts]})
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
