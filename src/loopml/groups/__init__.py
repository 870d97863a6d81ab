"""Groups that travel: definitions of sets of rows, applicable to any rows.

Every group error analysis reports (a trait, a confused pair, a discovered
slice, an embedding cluster, a tag) is a typed definition here, below the
stages, so later stages (collecting from a pool, monitoring production rows)
apply the same groups without importing error analysis::

    >>> from loopml.groups import Rows, membership
    >>> rows = Rows.from_frame(pool, like=project.dataset)  # doctest: +SKIP
    >>> mask = membership(project.groups()["slice:3f2a9c01b7de"], rows)  # doctest: +SKIP

- :mod:`~loopml.groups.group`: ``Group``, ``GroupKind``, ``membership``, pairs;
- :mod:`~loopml.groups.rows`: ``Rows``, the view groups are applied to;
- :mod:`~loopml.groups.traits`: the user's traits (loopml.yaml, traits.py, tags);
- :mod:`~loopml.groups.builtin`: built-in traits with cut-offs fitted on train;
- :mod:`~loopml.groups.slice`: ``Predicate``, ``Slice``, ``SliceGroup``;
- :mod:`~loopml.groups.cluster`: ``ClusterGroup`` (encoder + stored centres);
- :mod:`~loopml.groups.store`: ``Groups`` and the project's ``GroupStore``.
"""

from loopml.groups.builtin import (
    MissingTrait,
    RangeTrait,
    TextRuleTrait,
    ThresholdTrait,
    fit_builtin_traits,
)
from loopml.groups.cluster import ClusterGroup, Encoder
from loopml.groups.group import (
    Group,
    GroupKind,
    PairGroup,
    TraitGroup,
    TraitSource,
    group_from_dict,
    membership,
)
from loopml.groups.rows import Rows
from loopml.groups.slice import Predicate, Slice, SliceGroup
from loopml.groups.store import Groups, GroupStore, StoredGroup
from loopml.groups.traits import PythonTrait, ScopeTrait, TagTrait, TraitSources, trait

__all__ = [
    "ClusterGroup", "Encoder", "Group", "GroupKind", "GroupStore", "Groups", "MissingTrait",
    "PairGroup", "Predicate", "PythonTrait", "RangeTrait", "Rows", "ScopeTrait", "Slice",
    "SliceGroup", "StoredGroup", "TagTrait", "TextRuleTrait", "ThresholdTrait", "TraitGroup",
    "TraitSource", "TraitSources", "fit_builtin_traits", "group_from_dict", "membership",
    "trait",
]
