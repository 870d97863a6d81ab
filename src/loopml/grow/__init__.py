"""Add data where the model fails: collect, augment, synthesize, and the lift of each action.

Every action adds examples through :meth:`loopml.project.Project.add_examples`
(with their provenance: origin, parent, target group), then measures its lift:
the reference run retrained with and without the new examples over several
seeds, overall and per stored group (:mod:`loopml.grow.lift`), recorded in the
ledger (``.loopml/ledger.json``). It sits above the stages (it retrains with
:mod:`loopml.train` and reads groups and error reports) and below the report.
"""
