"""Background work: Celery tasks (thin, keyed by ids) and the Django-free ML core in `workers.ml`."""
