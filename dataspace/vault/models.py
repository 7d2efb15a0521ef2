"""Wrapped data keys. A data key's plaintext never touches the database."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.db import models

_M = TypeVar("_M", bound=models.Model)


class KeyMaterialQuerySet(models.QuerySet[_M]):
    def only(self, *fields: str) -> KeyMaterialQuerySet[_M]:
        # only() names exactly what to load. Django's would drop the names the manager deferred
        # (so refresh_from_db could never load key material); and its deletion collector calls
        # only() of nothing for a model nothing references, which would load every column.
        if not fields:
            return self
        cleared: KeyMaterialQuerySet[_M] = self.defer(None)
        return super(KeyMaterialQuerySet, cleared).only(*fields)


class KeyMaterialManager(models.Manager[_M]):
    """Loads a model without its key-material columns (ISSUE-12 custody). Only the roles that hold
    the matching keyring may SELECT those columns (``dataspace.db_grants``); every other query
    leaves them out, and reading the attribute loads it on its own, in the one place that unseals.
    Also the model's base manager, so related lookups and deletion cascades leave them out too.
    Subclassed per model (a class attribute, not an argument: Django builds related managers from
    the class)."""

    columns: tuple[str, ...] = ()

    def get_queryset(self) -> models.QuerySet[_M]:
        return KeyMaterialQuerySet(self.model, using=self._db).defer(*self.columns)


class KeyMaterialModel(models.Model):
    """A model whose key-material columns its manager defers. ``refresh_from_db()`` reloads every
    field the instance holds, key material included: left to Django it would skip the fields the
    manager defers and keep their stale values (a re-wrapped key under its new KEK id)."""

    class Meta:
        abstract = True

    def refresh_from_db(self, using: str | None = None, fields: Any = None, from_queryset: Any = None) -> None:
        if fields is None and from_queryset is None:
            deferred = self.get_deferred_fields()
            fields = [f.attname for f in self._meta.concrete_fields if f.attname not in deferred]
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)


class DataKeyManager(KeyMaterialManager["DataKey"]):
    columns = ("wrapped_key",)


class DataKey(KeyMaterialModel):
    """A random 256-bit key, stored only wrapped by the root key of its purpose's keyring.

    The wrap is bound to this row's id (AAD), so a wrapped key copied onto another row fails.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    purpose = models.CharField(max_length=32)
    # The keyring (dataspace.roles.Keyring) whose root key wraps it: data, ckks, wallet, receipt.
    keyring = models.CharField(max_length=16, default="data", db_index=True)
    kek_id = models.CharField(max_length=32, db_index=True)
    wrapped_key = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    rewrapped_at = models.DateTimeField(null=True, blank=True)

    objects = DataKeyManager()

    class Meta:
        base_manager_name = "objects"

    def __str__(self) -> str:
        return f"data key {self.id} ({self.purpose}, {self.keyring} root {self.kek_id})"
