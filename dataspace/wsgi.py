"""WSGI entry point (gunicorn dataspace.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")

application = get_wsgi_application()
