"""Catalogue signals: other apps react to datasets without the catalogue knowing them."""

from django.dispatch import Signal

# Sent by the ingest worker once a dataset exists, after commit; kwargs: dataset_id (UUID).
dataset_ingested = Signal()
# Sent inside the deleting transaction, before the dataset row goes; kwargs: dataset_id (UUID).
dataset_deleting = Signal()
