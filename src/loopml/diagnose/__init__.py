"""Diagnose: bias and variance against a baseline, learning and validation curves, advice."""

from loopml.diagnose.advice import RULES, Advice, advise
from loopml.diagnose.diagnosis import Diagnosis, diagnose, sweep_size

__all__ = ["RULES", "Advice", "Diagnosis", "advise", "diagnose", "sweep_size"]
