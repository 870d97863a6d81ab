"""Diagnose: bias and variance against a baseline, learning and validation curves, advice."""

from loopml.diagnose.advice import RULES, Advice, AdviceAction, advise
from loopml.diagnose.curves import CurvePoint, ValidationCurve
from loopml.diagnose.diagnosis import Diagnosis, judge
from loopml.diagnose.evidence import CurveSetting, Evidence, Verdict
from loopml.diagnose.learning import Extrapolation, LearningCurve, extrapolate
from loopml.diagnose.sweep import Reference, diagnose

__all__ = ["RULES", "Advice", "AdviceAction", "CurvePoint", "CurveSetting", "Diagnosis",
           "Evidence", "Extrapolation", "LearningCurve", "Reference", "ValidationCurve",
           "Verdict", "advise", "diagnose", "extrapolate", "judge"]
