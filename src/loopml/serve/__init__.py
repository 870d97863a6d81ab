"""Serving a deployed model: the HTTP app, its prediction log, and monitoring.

The only package that imports fastapi, uvicorn, sqlalchemy and prometheus_client.
"""
