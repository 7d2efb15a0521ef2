"""Redlake: a trusted data space. Data usable, not obtainable."""

from dataspace.celery import app as celery_app

__all__ = ["celery_app"]
