"""Catalogue signals: other apps react to datasets without the catalogue knowing them."""

from django.dispatch import Signal

# Sent by the ingest worker once a dataset exists, after commit; kwargs: dataset_id (UUID).
dataset_ingested = Signal()
# Sent before a dataset is deleted or declared non-personal, before anything changes; kwargs:
# dataset_id (UUID), change ("delete" | "declare_non_personal"). A receiver returns None, or the
# reason (a sentence) the change must not happen: any reason refuses it.
dataset_change_check = Signal()
# Sent after commit when a dataset's privacy terms changed (budget raised, declared
# non-personal); kwargs: dataset_id (UUID).
dataset_privacy_changed = Signal()
# Sent inside the deleting transaction, before the dataset row goes; kwargs: dataset_id (UUID).
dataset_deleting = Signal()
