"""The Django project: settings, URLs and the Celery application."""

# Importing the app here makes it the current Celery app in every Django process, so tasks queued
# from the web server or a management command go to the configured broker, not Celery's default.
from picterra.celery import app as celery_app

__all__ = ["celery_app"]
