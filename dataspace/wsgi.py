"""WSGI entry point (gunicorn dataspace.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")

application = get_wsgi_application()

# ISSUE-14: the broker transport's import, here rather than in the first request that queues a
# task. No connection and no thread: a thread left running at import made a short-lived process
# that imported this module hang at exit (found by tests/unit/test_recursion_limit.py in CI).
from dataspace.tasking import load_transport  # noqa: E402 - needs the settings configured above

load_transport()
