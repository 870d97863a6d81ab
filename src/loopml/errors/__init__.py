"""Error analysis: traits, slices, label issues and the ErrorReport.

(The exceptions loopml raises for user mistakes live in ``loopml.exceptions``.)
"""
