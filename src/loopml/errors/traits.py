"""Traits over the analysed rows: every trait group's mask, named once.

Traits are groups (:mod:`loopml.groups`): declared in loopml.yaml, written as
``@loopml.trait`` functions in ``traits.py``, tagged by hand, or built in
(with cut-offs fitted on train). Here they are applied to the val rows an
analysis looks at, and their names are checked: unique across the user's
sources, and a built-in trait gives way to a user trait of the same name,
since the user's meaning wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from loopml.exceptions import ScopeError
from loopml.groups import Group, Rows, TraitGroup, TraitSource, membership
from loopml.groups.traits import trait

__all__ = ["Trait", "compute_traits", "trait"]


@dataclass
class Trait:
    """One trait over the analysed examples: its definition and its mask."""

    definition: TraitGroup
    mask: pd.Series  # bool, indexed by example id

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def source(self) -> TraitSource:
        return self.definition.source

    @property
    def description(self) -> str:
        return self.definition.description

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": str(self.source), "description": self.description,
                "count": int(self.mask.sum())}


def compute_traits(rows: Rows, definitions: list[Group]) -> list[Trait]:
    """Every trait of ``definitions`` over ``rows``, user traits first.

    Raises
    ------
    ScopeError
        If two of the user's traits share a name.
    """
    traits: list[Trait] = []
    user = [d for d in definitions if isinstance(d, TraitGroup)
            and d.source is not TraitSource.BUILTIN]
    for definition in user:
        clash = next((t for t in traits if t.name == definition.name), None)
        if clash is not None:
            raise ScopeError(f"trait '{definition.name}' is defined twice ({clash.source} and "
                             f"{definition.source})", hint="rename one of them")
        traits.append(Trait(definition, _mask(definition, rows)))
    taken = {t.name for t in traits}
    for definition in definitions:
        if isinstance(definition, TraitGroup) and definition.source is TraitSource.BUILTIN \
                and definition.name not in taken:
            traits.append(Trait(definition, _mask(definition, rows)))
    return traits


def _mask(definition: TraitGroup, rows: Rows) -> pd.Series:
    return pd.Series(membership(definition, rows), index=rows.ids)
