"""WSGI entry point (gunicorn dataspace.wsgi)."""

import os
import threading

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")

application = get_wsgi_application()

# ISSUE-14: on a thread, so that a broker that is away does not hold the server's start.
from dataspace.tasking import connect_ahead  # noqa: E402 - needs the settings configured above

threading.Thread(target=connect_ahead, name="broker-connect-ahead", daemon=True).start()
