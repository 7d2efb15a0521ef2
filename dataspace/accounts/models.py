"""Users, their roles and their Ethereum accounts."""

from __future__ import annotations

import enum

from django.contrib.auth.models import AbstractUser
from django.db import models

from dataspace.vault.models import KeyMaterialManager, KeyMaterialModel


class Role(enum.StrEnum):
    PROVIDER = "provider"
    CONSUMER = "consumer"
    AUDITOR = "auditor"
    OPERATOR = "operator"


class User(AbstractUser):
    """A person or system using the space. Roles combine: a provider may also consume.

    The operator role is Django's staff flag, so operators reach the admin.
    """

    is_provider = models.BooleanField(default=False)
    is_consumer = models.BooleanField(default=False)
    is_auditor = models.BooleanField(default=False)

    def has_role(self, role: Role) -> bool:
        return {
            Role.PROVIDER: self.is_provider,
            Role.CONSUMER: self.is_consumer,
            Role.AUDITOR: self.is_auditor,
            Role.OPERATOR: self.is_staff,
        }[role]

    @property
    def roles(self) -> list[str]:
        return [str(role) for role in Role if self.has_role(role)]


class WalletManager(KeyMaterialManager["Wallet"]):
    columns = ("sealed_private_key",)


class Wallet(KeyMaterialModel):
    """The user's Ethereum account: a custodial key sealed by the vault, or an address the user
    proved control of by signing a challenge."""

    class Kind(models.TextChoices):
        CUSTODIAL = "custodial"
        EXTERNAL = "external"

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="wallet")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    address = models.CharField(max_length=42, unique=True)
    # Custodial only: the private key sealed under its own vault data key.
    data_key = models.OneToOneField("vault.DataKey", null=True, blank=True, on_delete=models.PROTECT)
    sealed_private_key = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = WalletManager()

    class Meta:
        base_manager_name = "objects"
        constraints = [
            models.CheckConstraint(
                name="custodial_wallet_has_sealed_key",
                condition=models.Q(kind="external", data_key__isnull=True)
                | models.Q(kind="custodial", data_key__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} wallet {self.address}"


class WalletChallenge(models.Model):
    """A single-use message the user signs to prove control of an address."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="wallet_challenges")
    nonce = models.CharField(max_length=64, unique=True)
    message = models.TextField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"wallet challenge for {self.user_id} (expires {self.expires_at:%Y-%m-%d %H:%M})"
