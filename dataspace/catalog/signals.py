"""Catalogue signals: other apps react to datasets without the catalogue knowing them."""

from django.dispatch import Signal

# Sent by the ingest worker once a dataset exists, after commit; kwargs: dataset_id (UUID).
dataset_ingested = Signal()
# Sent before a dataset is deleted, before anything changes; kwargs: dataset_id (UUID). A receiver
# returns None, or the reason (a sentence) the dataset must stay: any reason refuses the deletion.
dataset_delete_check = Signal()
# Sent inside the deleting transaction, before the dataset row goes; kwargs: dataset_id (UUID).
dataset_deleting = Signal()
