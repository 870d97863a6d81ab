"""Serving a deployed model: the HTTP app, its prediction log, and monitoring.

The only package that imports fastapi, uvicorn, sqlalchemy and prometheus_client.
"""

from loopml.serve.app import create_app, serve
from loopml.serve.prediction_log import PredictionLog

__all__ = ["PredictionLog", "create_app", "serve"]
