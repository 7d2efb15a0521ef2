"""Wrapped data keys. A data key's plaintext never touches the database."""

import uuid

from django.db import models


class DataKey(models.Model):
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

    def __str__(self) -> str:
        return f"data key {self.id} ({self.purpose}, {self.keyring} root {self.kek_id})"
