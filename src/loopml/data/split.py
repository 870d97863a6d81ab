"""The Split: which examples train, which validate, which test.

It is computed once, stored by example id in ``.loopml/split.parquet``, and
reused by every iteration, so candidates are always compared on the same
examples. Examples whose inputs are exact duplicates share a part, so a
model is never validated on a copy of a row it trained on. New rows of the
source are placed by a seeded hash of their id (or with their duplicates,
where those are known), so adding data never moves an old example from one
part to another; examples loopml added take the part their action recorded
(train, always, for augmented and synthesized ones). Ids do not depend on
the target: a relabelled example keeps its id and its part, and a short hash
of each label is stored next to its part so an update can say how many were
relabelled. The stored files depend only on ids, parts and labels, so
removing an action's examples writes them back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.atomic import write_parquet_atomic, write_text_atomic
from loopml.data.dataset import ID_SCHEME, ID_SCHEMES, LEGACY_ID_SCHEME, Dataset, input_keys
from loopml.data.sampling import holdout
from loopml.exceptions import DataError
from loopml.scope import SplitSpec

PARTS = ("train", "val", "test")
MIN_PER_CLASS = 3
SPLIT_FILES = ("split.parquet", "split.json")


@dataclass(frozen=True)
class SplitUpdate:
    """What one update of the split did: ids placed, ids gone, ids relabelled, per part.

    ``added`` counts every new id; ``recorded`` the part of them that loopml
    added (placed where their action said, not by hash); ``relabelled`` the
    old ids whose label changed (they keep their id and their part).
    """

    added: dict[str, int]
    removed: dict[str, int]
    version_before: str
    version_after: str
    recorded: dict[str, int] = field(default_factory=dict)
    relabelled: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.version_before != self.version_after

    @property
    def n_added(self) -> int:
        return sum(self.added.values())

    @property
    def n_removed(self) -> int:
        return sum(self.removed.values())

    @property
    def n_relabelled(self) -> int:
        return sum(self.relabelled.values())

    def describe(self) -> str:
        """One line for a person: where the new examples went, how many left or changed label."""
        def counts(by_part: dict[str, int]) -> str:
            return ", ".join(f"{n} {p}" for p, n in by_part.items() if n) or "none"

        n_recorded = sum(self.recorded.values())
        by_action = (f", {n_recorded} of them added by loopml ({counts(self.recorded)})"
                     if n_recorded else "")
        relabelled = (f", {self.n_relabelled} relabelled ({counts(self.relabelled)})"
                      if self.n_relabelled else "")
        return (f"{self.n_added} new example(s) placed ({counts(self.added)}){by_action}, "
                f"{self.n_removed} gone ({counts(self.removed)}){relabelled}; old examples "
                f"keep their part; split {self.version_before} -> {self.version_after}")

    def to_dict(self) -> dict:
        return {"added": dict(self.added), "removed": dict(self.removed),
                "recorded": dict(self.recorded), "relabelled": dict(self.relabelled),
                "version_before": self.version_before, "version_after": self.version_after}


@dataclass(frozen=True)
class Duplicates:
    """Rows whose inputs (every feature) repeat another row's: they always share a part.

    ``rows`` counts the repeats (a group of three identical rows counts two),
    ``groups`` the distinct inputs that occur more than once.
    """

    rows: int
    groups: int

    def describe(self) -> str:
        if not self.rows:
            return "no two examples have the same inputs"
        return (f"{self.rows} example(s) repeat the inputs of another ({self.groups} group(s) "
                "of duplicates); each group shares one part, so val never holds a copy of a "
                "train example")

    def to_dict(self) -> dict:
        return {"rows": self.rows, "groups": self.groups}


def duplicate_inputs(dataset: Dataset) -> Duplicates:
    """How many examples repeat another's inputs, and in how many groups."""
    sizes = input_keys(dataset).value_counts()
    repeated = sizes[sizes > 1]
    return Duplicates(rows=int((repeated - 1).sum()), groups=len(repeated))


def label_keys(dataset: Dataset) -> pd.Series:
    """A short hash of each example's label, by id (stored to tell a relabel)."""
    def key(value: object) -> str:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1 and 1.0 are the same label, whatever the column's dtype
        return hashlib.sha256(repr(value).encode()).hexdigest()[:8]

    return pd.Series([key(v) for v in dataset.y()], index=dataset.ids.astype(str),
                     name="label", dtype=object)


@dataclass
class Split:
    """Part ('train' / 'val' / 'test') of every example id.

    ``labels`` holds a short hash of each id's label when it was last placed
    (None for a split stored before labels were kept); it never enters the
    ``version``, which depends on the parts alone. ``id_scheme`` is how the
    dataset's content ids were made when the split was (see
    :data:`loopml.data.dataset.ID_SCHEMES`): a project split before ids left
    the target out keeps its old ids, so nothing moves under its runs.
    """

    parts: pd.Series
    seed: int
    fractions: dict[str, float]
    data_version: str
    labels: pd.Series | None = None
    id_scheme: str = ID_SCHEME

    def ids(self, part: str) -> pd.Index:
        return self.parts.index[self.parts.to_numpy() == part]

    def counts(self) -> dict[str, int]:
        return {p: int((self.parts == p).sum()) for p in PARTS}

    @property
    def version(self) -> str:
        digest = hashlib.sha256(pd.util.hash_pandas_object(self.parts).to_numpy().tobytes())
        return digest.hexdigest()[:12]

    def same_settings(self, spec: SplitSpec, seed: int) -> bool:
        """Whether this split was made with ``spec``'s fractions and ``seed``."""
        wanted = {"train": spec.train, "val": spec.val, "test": spec.test}
        return int(self.seed) == int(seed) and all(
            abs(float(self.fractions.get(p, 0.0)) - wanted[p]) < 1e-9 for p in PARTS)

    # ------------------------------------------------------------ building

    @classmethod
    def compute(cls, dataset: Dataset, spec: SplitSpec, *, seed: int) -> Split:
        """A seeded (stratified, for classification) holdout of val and test.

        Exact duplicate inputs form one group that goes to one part. Classes
        with fewer than :data:`MIN_PER_CLASS` groups go to train; when what is
        left is too small to hold val, the holdout is drawn from every group,
        unstratified, with a warning. Either way a class never sits in val or
        test without an example in train.
        """
        fractions = {"train": spec.train, "val": spec.val, "test": spec.test}
        if len(dataset.ids) < 10:
            raise DataError(f"the data has {len(dataset.ids)} examples; a train/val/test "
                            "split needs at least 10")
        keys = input_keys(dataset).to_numpy()
        first = ~pd.Series(keys).duplicated().to_numpy()
        reps = dataset.ids.to_numpy()[first]  # one id per group of identical inputs
        labels = dataset.y()[first] if (dataset.task == "classification"
                                        and spec.stratify) else None
        group_part = _holdout_groups(reps, None if labels is None else labels.astype(str),
                                     spec, seed=seed)
        part_of_key = dict(zip(keys[first], group_part, strict=True))
        parts = pd.Series([part_of_key[k] for k in keys], index=dataset.ids, name="part",
                          dtype=object)
        if not (parts == "val").any():
            raise DataError(f"the data has {len(dataset.ids)} examples but none can go to "
                            "val: every class is too rare to be both trained on and validated",
                            hint="collect more examples of each class, or merge rare classes")
        return cls(parts, seed, fractions, dataset.version, label_keys(dataset),
                   dataset.id_scheme)

    def update(self, dataset: Dataset) -> tuple[Split, SplitUpdate]:
        """Place new ids, forget ids no longer in the data, count relabelled ones.

        A new source id whose inputs duplicate an example the split knows goes
        to that example's part; other new source ids are placed by a seeded
        hash of the id (of the first one, for new duplicates of each other);
        ids loopml added take the part their action recorded
        (``dataset.recorded_parts()``). Every other id keeps its part, and ids
        follow the dataset's order, so the same data always gives the same
        split. The returned :class:`SplitUpdate` says how many ids went to each
        part, how many left and how many changed label; the split's version
        changes whenever one of the first two is not zero.
        """
        recorded = dataset.recorded_parts()
        known = self.parts.index.intersection(dataset.ids)
        new = dataset.ids.difference(self.parts.index)
        gone = self.parts.index.difference(dataset.ids)
        by_hash = new.difference(recorded.index)
        placed = pd.Series(self._place(by_hash, dataset, known), index=by_hash, name="part",
                           dtype=object)
        placed = pd.concat([placed, recorded.loc[new.intersection(recorded.index)]])
        parts = pd.concat([self.parts.loc[known].astype(object), placed])
        parts.loc[recorded.index] = recorded  # an added example never leaves its part
        parts = parts.loc[dataset.ids].rename("part")
        labels = label_keys(dataset)
        updated = Split(parts, self.seed, self.fractions, dataset.version, labels,
                        self.id_scheme)
        added_here = placed.loc[placed.index.intersection(recorded.index)]
        relabelled = pd.Index([])
        if self.labels is not None:
            before = self.labels.reindex(known.astype(str))
            now = labels.reindex(known.astype(str))
            relabelled = known[(before.notna() & (before != now)).to_numpy()]
        report = SplitUpdate(
            added={p: int((placed == p).sum()) for p in PARTS},
            removed={p: int((self.parts.loc[gone] == p).sum()) for p in PARTS},
            version_before=self.version, version_after=updated.version,
            recorded={p: int((added_here == p).sum()) for p in PARTS},
            relabelled={p: int((parts.loc[relabelled] == p).sum()) for p in PARTS})
        return updated, report

    def _place(self, ids: pd.Index, dataset: Dataset | None = None,
               known: pd.Index | None = None) -> list[str]:
        """Parts for new source ids: with their known duplicates (of ``known`` ids in
        ``dataset``), else by a seeded hash of the id; without ``dataset``, by hash alone."""
        if not len(ids):
            return []
        keys = input_keys(dataset) if dataset is not None else pd.Series(ids, index=ids)
        known_part = {}
        if dataset is not None and known is not None:
            for key, part in zip(keys.loc[known], self.parts.loc[known], strict=True):
                known_part.setdefault(key, part)
        edges = np.cumsum([self.fractions[p] for p in PARTS])
        out = []
        for i, key in zip(ids, keys.loc[ids], strict=True):
            if key not in known_part:  # the first of new duplicates places the rest
                h = int(hashlib.sha256(f"{self.seed}:{i}".encode()).hexdigest()[:8], 16)
                known_part[key] = PARTS[int(np.searchsorted(edges, h / 0xFFFFFFFF,
                                                            side="right").clip(0, 2))]
            out.append(known_part[key])
        return out

    @classmethod
    def from_parts(cls, parts: pd.Series, dataset: Dataset, *, seed: int,
                   fractions: dict[str, float]) -> Split:
        """A split of ``dataset`` from known parts by id (ids not given: test).

        Rebuilds a lost split from a run's predictions; built like
        :meth:`load` builds one, so its version compares with the run's.
        """
        ids = [str(i) for i in dataset.ids]
        given = {str(i): str(p) for i, p in parts.items()}
        table = pd.DataFrame({"id": ids, "part": [given.get(i, "test") for i in ids]})
        labels = label_keys(dataset)
        return cls(pd.Series(table["part"].to_numpy(), index=pd.Index(table["id"], name="id"),
                             name="part"), seed, dict(fractions), dataset.version,
                   labels.set_axis(pd.Index(ids, name="id")), dataset.id_scheme)

    # ------------------------------------------------------------ storage

    def save(self, state_dir: Path) -> None:
        """Write both files atomically: a crash leaves the old split or the new one."""
        state_dir.mkdir(parents=True, exist_ok=True)
        # Built from plain lists, so the bytes depend on the ids, parts and labels
        # alone (not on the dtypes the series happened to carry).
        ids = [str(i) for i in self.parts.index]
        columns = {"id": ids, "part": [str(p) for p in self.parts]}
        if self.labels is not None:
            by_id = self.labels.set_axis(self.labels.index.astype(str))
            columns["label"] = [str(v) for v in by_id.reindex(ids).fillna("")]
        meta = {"seed": self.seed, "fractions": self.fractions,
                "data_version": self.data_version, "version": self.version,
                "counts": self.counts(), "id_scheme": self.id_scheme}
        write_parquet_atomic(pd.DataFrame(columns), state_dir / "split.parquet")
        write_text_atomic(state_dir / "split.json", json.dumps(meta, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Split | None:
        """The stored split; None when a file is missing, a DataError when one is damaged."""
        table_file, meta_file = state_dir / "split.parquet", state_dir / "split.json"
        if not table_file.exists() or not meta_file.exists():
            return None
        hint = ("restore it from a backup, or delete split.parquet and split.json: loopml "
                "rebuilds them from the runs' recorded ids when it can, and says so")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            seed, fractions = int(meta["seed"]), {p: float(meta["fractions"][p]) for p in PARTS}
            data_version = str(meta["data_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{meta_file} is damaged ({type(exc).__name__}: {exc}); it must "
                            "be JSON with seed, fractions and data_version", hint=hint) from None
        try:
            table = pd.read_parquet(table_file)
        except Exception as exc:  # pyarrow raises many kinds for a damaged file
            raise DataError(f"{table_file} is damaged and cannot be read as Parquet "
                            f"({type(exc).__name__})", hint=hint) from None
        missing = [c for c in ("id", "part") if c not in table.columns]
        bad = set(table["part"].astype(str)) - set(PARTS) if not missing else set()
        if missing or bad or not table["id"].is_unique:
            what = (f"lacks column(s) {missing}" if missing else
                    f"has parts {sorted(bad)[:5]} besides train/val/test" if bad else
                    "has an id twice")
            raise DataError(f"{table_file} {what}", hint=hint)
        index = pd.Index(table["id"], name="id")
        parts = pd.Series(table["part"].to_numpy(), index=index, name="part")
        labels = (pd.Series(table["label"].to_numpy(), index=index, name="label", dtype=object)
                  if "label" in table.columns else None)
        return cls(parts, seed, fractions, data_version, labels, stored_id_scheme(meta))


def stored_id_scheme(meta: dict | None) -> str:
    """The id scheme a stored ``split.json`` was made with (none named: the old one)."""
    if meta is None:
        return ID_SCHEME
    scheme = meta.get("id_scheme", LEGACY_ID_SCHEME)
    return scheme if scheme in ID_SCHEMES else ID_SCHEME


def read_id_scheme(state_dir: Path | None) -> str:
    """The id scheme of the split stored in ``state_dir`` (the current one if none is)."""
    meta_file = None if state_dir is None else Path(state_dir) / "split.json"
    if meta_file is None or not meta_file.exists():
        return ID_SCHEME
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ID_SCHEME  # a damaged file is reported by Split.load
    return stored_id_scheme(meta if isinstance(meta, dict) else None)


@dataclass(frozen=True)
class Resplit:
    """What re-splitting did (or would do): how many examples change part, what it invalidates.

    ``runs`` counts the runs scored on the old split: they are kept, but their
    val scores no longer compare with runs on the new one. ``moved_aside``
    names where the old split files went (empty when nothing was written).
    """

    before: Split | None
    after: Split
    changed: int
    runs: int
    moved_aside: tuple[Path, ...] = ()

    @property
    def unchanged(self) -> bool:
        return self.before is not None and self.before.version == self.after.version

    def describe(self) -> str:
        f = self.after.fractions
        new = f"train/val/test {f['train']:g}/{f['val']:g}/{f['test']:g}, seed {self.after.seed}"
        if self.before is None:
            old = "no readable stored split"
        else:
            b = self.before.fractions
            old = (f"the stored split's {b.get('train', 0):g}/{b.get('val', 0):g}/"
                   f"{b.get('test', 0):g}, seed {self.before.seed}")
        runs = (f"; the {self.runs} run(s) so far were scored on the old split: they are kept, "
                "but their val scores no longer compare with new runs" if self.runs else "")
        return (f"a new split with {new} (was {old}): {self.changed} of "
                f"{len(self.after.parts)} examples change part{runs}")

    def to_dict(self) -> dict:
        return {"version_before": None if self.before is None else self.before.version,
                "version_after": self.after.version, "changed": self.changed,
                "runs": self.runs, "counts": self.after.counts(),
                "fractions": dict(self.after.fractions), "seed": self.after.seed,
                "moved_aside": [str(p) for p in self.moved_aside]}


def resplit(dataset: Dataset, spec: SplitSpec, *, seed: int, before: Split | None,
            runs: int) -> Resplit:
    """The split ``init`` would compute for ``dataset`` now, compared with ``before``.

    Computed on the source's rows; examples loopml added keep their recorded part.
    """
    after = Split.compute(source_only(dataset), spec, seed=seed)
    if dataset.added is not None and len(dataset.added):
        after = after.update(dataset)[0]
    if before is None:
        changed = len(after.parts)
    else:
        old = before.parts.set_axis(before.parts.index.astype(str))
        new = after.parts.set_axis(after.parts.index.astype(str))
        changed = int((old.reindex(new.index) != new).sum())
    return Resplit(before, after, changed, runs)


def move_split_aside(state_dir: Path, stamp: str) -> tuple[Path, ...]:
    """Rename the split files to ``split.old-<stamp>.parquet`` / ``.json``; returns those."""
    moved = []
    for name in SPLIT_FILES:
        path = state_dir / name
        if path.exists():
            target = state_dir / f"split.old-{stamp}{path.suffix}"
            path.rename(target)
            moved.append(target)
    return tuple(moved)


def _holdout_groups(reps: np.ndarray, labels: np.ndarray | None, spec: SplitSpec, *,
                    seed: int) -> np.ndarray:
    """The part of each group (one representative id each), drawn by seeded holdouts."""
    parts = np.full(len(reps), "train", dtype=object)
    pool = np.ones(len(reps), dtype=bool)
    held = spec.val + spec.test
    if labels is not None:
        values, counts = np.unique(labels, return_counts=True)
        rare = values[counts < MIN_PER_CLASS]
        if len(rare):
            shown = ", ".join(map(repr, rare[:10].tolist())) + (" ..." if len(rare) > 10 else "")
            warnings.warn(f"{len(rare)} class(es) ({shown}) have fewer than {MIN_PER_CLASS} "
                          "examples; they go to train only", stacklevel=3)
            pool = ~np.isin(labels, rare)
        if pool.sum() < 10:  # too little left to stratify: draw from every group
            warnings.warn(f"after the rare classes only {int(pool.sum())} examples are left to "
                          "stratify; val and test are drawn without stratification",
                          stacklevel=3)
            pool[:] = True
    where = np.flatnonzero(pool)
    rest_labels = None if labels is None else labels[pool]
    _, held_at = holdout(where, rest_labels, held, seed=seed)
    parts[held_at] = "val"
    if spec.test > 0 and len(held_at) >= 2:
        held_labels = None if labels is None else labels[held_at]
        _, test_at = holdout(held_at, held_labels, spec.test / held, seed=seed)
        parts[test_at] = "test"
    if labels is not None:  # a class in val or test must have an example in train
        trained = set(labels[parts == "train"])
        for at in np.flatnonzero(parts != "train"):
            if labels[at] not in trained:
                parts[at] = "train"
                trained.add(labels[at])
    return parts


def source_only(dataset: Dataset) -> Dataset:
    """The dataset without the examples loopml added (what a fresh split is computed on)."""
    if dataset.added is None or not len(dataset.added):
        return dataset
    keep = dataset.ids.difference(dataset.added.index, sort=False)
    return replace(dataset, frame=dataset.frame.loc[keep], added=None)
