"""The Celery application. Tasks live in each app's ``tasks.py`` and call services."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dataspace.settings")

app = Celery("dataspace")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _tune_embedded_broker(**_: object) -> None:
    # kombu's SQLAlchemy transport polls its table once a second by default, which makes every
    # task wait ~1 s on the embedded broker. Passing polling_interval through
    # broker_transport_options crashes (kombu hands it to create_engine), so set it on the class.
    from django.conf import settings

    if str(settings.CELERY_BROKER_URL).startswith("sqla+"):
        from kombu.transport import sqlalchemy as kombu_sqla

        kombu_sqla.Transport.polling_interval = settings.EMBEDDED_BROKER_POLLING_INTERVAL


# ISSUE-14: connected strongly. Signals hold weak references by default, and the lambda this used
# to connect was collected at once, so the embedded broker kept its 1 s poll (a second per step).
app.on_configure.connect(_tune_embedded_broker, weak=False)
app.autodiscover_tasks()
