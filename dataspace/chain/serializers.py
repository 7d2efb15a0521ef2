"""How a chain write appears in the API: the public facts of one outbox row."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from dataspace.chain.models import ChainTransaction


class ChainWriteSerializer(serializers.ModelSerializer[ChainTransaction]):
    """Status, hash and block of a write, and the contract's reason if it was refused."""

    tx_hash = serializers.SerializerMethodField()
    revert_reason = serializers.SerializerMethodField()

    class Meta:
        model = ChainTransaction
        fields = ["status", "tx_hash", "block_number", "revert_reason"]

    def get_tx_hash(self, tx: ChainTransaction) -> str | None:
        return tx.tx_hash or None

    def get_revert_reason(self, tx: ChainTransaction) -> str | None:
        return tx.revert_reason or None


def chain_write(tx: ChainTransaction | None) -> dict[str, Any] | None:
    return None if tx is None else dict(ChainWriteSerializer(tx).data)
