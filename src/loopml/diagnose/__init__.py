"""Diagnose: bias and variance against a baseline, learning and validation curves, advice."""

from loopml.diagnose.advice import RULES, Advice, advise
from loopml.diagnose.diagnosis import Diagnosis, Reference, diagnose

__all__ = ["RULES", "Advice", "Diagnosis", "Reference", "advise", "diagnose"]
