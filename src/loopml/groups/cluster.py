"""Embedding clusters as groups: the rows nearest one of k stored centres.

Error analysis clusters val rows in a pretrained encoder's space (MiniLM for
text, EfficientNet-Lite0 for images) and reports the clusters where the model
errs. To apply such a cluster to other rows, the group keeps what produced
it: the encoder, the image side it embedded at, and all k KMeans centres
(a row belongs to the cluster whose centre is nearest, exactly as KMeans
assigned the val rows). The centres are an array, so the group store keeps
them in a ``.npy`` file named by their hash, which is also the key:
``cluster:<hash of the centres>:<label>``, the same in every run that finds
the same clustering.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.exceptions import DataError
from loopml.groups.group import Group, GroupKind

if TYPE_CHECKING:
    from loopml.groups.rows import Rows


class Encoder(StrEnum):
    """The pretrained encoders whose spaces clusters live in."""

    MINILM = "minilm"  # sentence-transformers all-MiniLM-L6-v2, for text
    EFFICIENTNET = "efficientnet-lite0"  # EfficientNet-Lite0 ImageNet features, for images


def centres_id(centres: np.ndarray) -> str:
    """12 hex digits of the SHA-1 of the centres (rounded to 6 decimals, so float noise
    in the last bits of a rerun does not change the key)."""
    rounded = np.ascontiguousarray(np.round(np.asarray(centres, dtype="<f8"), 6)) + 0.0
    digest = hashlib.sha1(str(rounded.shape).encode())
    digest.update(rounded.tobytes())
    return digest.hexdigest()[:12]


def nearest_centre(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row, after L2-normalising the rows
    (the clustering ran on unit vectors: cosine similarity)."""
    x = np.asarray(vectors, dtype=float)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    c = np.asarray(centres, dtype=float)
    distance = (c * c).sum(axis=1)[None, :] - 2.0 * (x @ c.T)  # + |x|^2, the same per row
    return distance.argmin(axis=1)


@dataclass(frozen=True, eq=False)
class ClusterGroup(Group):
    """Cluster ``label`` of the KMeans centres ``centres_id`` in ``encoder``'s space."""

    label: int
    encoder: Encoder
    image_size: int | None  # side images were embedded at (None: text)
    centres_id: str
    about: str = ""  # what describes it: distinctive words, over-represented labels/traits
    centres: np.ndarray | None = field(default=None, repr=False)
    folder: Path | None = field(default=None, repr=False)  # where <centres_id>.npy is

    type_name = "cluster"
    kind = GroupKind.CLUSTER

    @classmethod
    def of(cls, centres: np.ndarray, label: int, encoder: Encoder, image_size: int | None,
           about: str = "") -> ClusterGroup:
        centres = np.asarray(centres, dtype=float)
        return cls(int(label), Encoder(encoder), image_size, centres_id(centres), about,
                   centres)

    @property
    def key(self) -> str:
        return f"cluster:{self.centres_id}:{self.label}"

    @property
    def name(self) -> str:
        return f"cluster {self.label}"

    @property
    def description(self) -> str:
        return self.about

    @property
    def centres_file(self) -> str:
        return f"{self.centres_id}.npy"

    def all_centres(self) -> np.ndarray:
        """The k centres, from memory or from the group store's file."""
        if self.centres is None:
            path = None if self.folder is None else self.folder / self.centres_file
            if path is None or not path.exists():
                raise DataError(f"the centres of {self.key} are not at hand"
                                + (f" ({path} is missing)" if path else ""),
                                hint="take the group from Project.groups(), which reads "
                                     "them from .loopml/groups/")
            object.__setattr__(self, "centres", np.load(path, allow_pickle=False))
        return self.centres

    def _members(self, rows: Rows) -> np.ndarray:
        centres = self.all_centres()
        vectors = rows.embeddings(str(self.encoder), self.image_size)
        if vectors.shape[1] != centres.shape[1]:
            raise DataError(f"{self.key} lives in a {centres.shape[1]}-d space, but "
                            f"{self.encoder} gave {vectors.shape[1]}-d vectors")
        return nearest_centre(vectors, centres) == self.label

    def _fields(self) -> dict[str, Any]:
        return {"label": self.label, "encoder": str(self.encoder),
                "image_size": self.image_size, "centres_id": self.centres_id,
                "centres_file": self.centres_file}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> ClusterGroup:
        return cls(int(data["label"]), Encoder(data["encoder"]), data.get("image_size"),
                   data["centres_id"], data.get("description", ""), folder=folder)
