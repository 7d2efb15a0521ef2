"""Chain writes through an outbox: a row first, then sign (nonce under a lock, raw bytes and
hash saved), then broadcast, then confirm. Every step is idempotent and keyed:

- the same idempotency key never makes a second transaction;
- a retry after a crash rebroadcasts the saved bytes (same hash) or finds them mined; it never
  signs again, so nothing is sent twice;
- a write that would revert fails before it takes a nonce, with the custom error decoded;
- a user's relayed signature is made by the chain signer, when it signs the write (``signature_by``):
  no other tier unseals a custodial wallet's key;
- a write ends CONFIRMED or FAILED, and ``write_follow`` tells its caller which exactly once per
  call, so each flow that waits on a write reads as "on confirmed, on failed".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from dataspace import tasking
from dataspace.chain import eip712, gateway
from dataspace.chain.models import ChainTransaction, SenderNonce
from dataspace.errors import DomainError, ErrorCode

logger = logging.getLogger(__name__)
Status = ChainTransaction.Status
GAS_HEADROOM = 1.25


def write_enqueue(
    *, kind: str, contract: str, function: str, args: list[Any], idempotency_key: str, sender: str | None = None
) -> ChainTransaction:
    """Records an intended write (once per key) and queues it for sending after commit.

    ``sender`` is the operator unless given: a custodial wallet's address sends as that user
    (accepting an offer, withdrawing earnings); its key is unsealed only to sign."""
    sender = sender or gateway.operator_address()
    fields = {"kind": kind, "contract": contract, "function": function, "args": args, "sender": sender}
    try:
        with transaction.atomic():
            tx, created = ChainTransaction.objects.get_or_create(
                chain_id=gateway.chain_id(), idempotency_key=idempotency_key, defaults=fields
            )
    except IntegrityError:
        tx, created = ChainTransaction.objects.get(chain_id=gateway.chain_id(), idempotency_key=idempotency_key), False
    if not created and (tx.contract, tx.function, tx.args) != (contract, function, args):
        raise DomainError(
            f"Idempotency key {idempotency_key!r} was already used for a different chain write.",
            code=ErrorCode.CONFLICT,
        )
    if created:
        tasking.enqueue_on_commit(SEND_TASK, tx.pk)
    return tx


SEND_TASK = "dataspace.chain.tasks.send_chain_write"


def write_progress(*, tx_id: int) -> ChainTransaction:
    """Moves one write as far as it can go now: sign, broadcast, confirm. Raises
    ``ChainUnavailable`` when the node is away (the caller retries later)."""
    tx = ChainTransaction.objects.get(pk=tx_id)
    if tx.status == Status.PENDING:
        _sign(tx)
        tx.refresh_from_db()
    if tx.status == Status.SIGNED:
        _broadcast(tx)
        tx.refresh_from_db()
    if tx.status == Status.SENT:
        _confirm(tx)
        tx.refresh_from_db()
    if tx.status == Status.SENT and _receipt_wait(tx):
        _confirm(tx)  # mined while this call waited: confirm now rather than on a retry
        tx.refresh_from_db()
    return tx


def _receipt_wait(tx: ChainTransaction) -> bool:
    """Waits briefly for a broadcast write's receipt, asking the node every
    ``CHAIN_RECEIPT_POLL_SECONDS`` (a development node mines at once, a production one within a
    block or two). True when it came within ``CHAIN_RECEIPT_WAIT_SECONDS``; otherwise the caller's
    task retries after ``CHAIN_POLL_SECONDS`` as before, so a slow chain never pins a worker long."""
    timeout = settings.CHAIN_RECEIPT_WAIT_SECONDS
    if timeout <= 0:
        return False
    try:
        gateway.connected_web3().eth.wait_for_transaction_receipt(
            HexBytes(tx.tx_hash), timeout=timeout, poll_latency=settings.CHAIN_RECEIPT_POLL_SECONDS
        )
    except Exception:  # TimeExhausted, or the node away: the retry (and the sweeper) carry on
        return False
    return True


def write_follow(
    *,
    tx_id: int,
    on_confirmed: Callable[[ChainTransaction], object],
    on_failed: Callable[[ChainTransaction], object],
) -> bool:
    """Moves a write on and, once it has an outcome, calls the matching handler with it.

    True when the write is CONFIRMED or FAILED (the handler has run), False while it is on its
    way. Handlers must be idempotent (guarded transitions): a redelivered step calls them again.
    """
    tx = write_progress(tx_id=tx_id)
    if tx.status == Status.FAILED:
        on_failed(tx)
        return True
    if tx.status == Status.CONFIRMED:
        on_confirmed(tx)
        return True
    return False


def write_pending(*, tx_id: int) -> bool:
    """Moves a write on; True while it is signed or sent but not yet mined deep enough."""
    return write_progress(tx_id=tx_id).status in {Status.SIGNED, Status.SENT}


SIGN_MARKER = "$eip712"


def signature_by(*, signer: str, typed_data: dict[str, Any]) -> dict[str, Any]:
    """An argument the chain signer fills in when it signs the write: ``signer``'s EIP-712
    signature of ``typed_data``. Custodial wallets' keys live with the chain signer only, so a
    service that needs a user's relayed signature (a usage, a dataset change) queues this in its
    place instead of unsealing the key itself."""
    return {SIGN_MARKER: {"signer": signer, "typed_data": typed_data}}


def _resolved(arg: Any) -> Any:
    if isinstance(arg, dict) and set(arg) == {SIGN_MARKER}:
        request = arg[SIGN_MARKER]
        signer = _signer(request["signer"])
        return "0x" + eip712.sign_typed_data(key=bytes(signer.key), typed_data=request["typed_data"]).hex()
    return arg


def _call(tx: ChainTransaction) -> Any:
    return gateway.contract(tx.contract).functions[tx.function](*(_resolved(arg) for arg in tx.args))


def _fail(tx: ChainTransaction, reason: str, *, only_from: Status | None = None) -> None:
    rows = ChainTransaction.objects.filter(pk=tx.pk).exclude(status=Status.CONFIRMED)
    if only_from is not None:
        rows = rows.filter(status=only_from)
    if rows.update(status=Status.FAILED, revert_reason=reason[:2000]):
        logger.warning("chain write %s (%s) failed: %s", tx.idempotency_key, tx.kind, reason)


def _sign(tx: ChainTransaction) -> None:
    w3 = gateway.connected_web3()
    call = _call(tx)
    try:
        gas = call.estimate_gas({"from": tx.sender})
    except ContractLogicError as exc:
        # ISSUE-14: only a write nobody signed fails here. Another worker may have signed, sent
        # and mined it since this one read it (the write's own effect then makes it revert).
        _fail(tx, gateway.revert_reason(exc), only_from=Status.PENDING)
        return
    except Exception as exc:
        raise gateway.ChainUnavailable(f"Gas estimation failed ({type(exc).__name__}).") from None
    # Fees come from the node before any lock is taken; they only need to be reasonable.
    tip = w3.eth.max_priority_fee
    fees = {"maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + tip, "maxPriorityFeePerGas": tip}
    chain_count = w3.eth.get_transaction_count(Web3.to_checksum_address(tx.sender), "pending")
    SenderNonce.objects.get_or_create(chain_id=tx.chain_id, address=tx.sender, defaults={"next_nonce": chain_count})
    with transaction.atomic():
        # ISSUE-14: write first, so the transaction holds the lock before it reads. PostgreSQL
        # locks the row either way; SQLite ignores SELECT ... FOR UPDATE, and without this two
        # workers (the sender and the job's step, now delivered together) both signed the write.
        ChainTransaction.objects.filter(pk=tx.pk).update(updated_at=timezone.now())
        locked = ChainTransaction.objects.select_for_update().get(pk=tx.pk)
        if locked.status != Status.PENDING:
            return  # another worker signed it first
        nonce_row = SenderNonce.objects.select_for_update().get(chain_id=tx.chain_id, address=tx.sender)
        # Someone else may have sent from this account: never reuse a nonce the chain has seen.
        nonce = max(nonce_row.next_nonce, chain_count)
        built = call.build_transaction(
            {"from": tx.sender, "nonce": nonce, "gas": int(gas * GAS_HEADROOM), "chainId": tx.chain_id, **fees}
        )
        signed = _signer(tx.sender).sign_transaction(built)
        locked.nonce, locked.raw_tx = nonce, bytes(signed.raw_transaction)
        locked.tx_hash, locked.status = "0x" + bytes(signed.hash).hex(), Status.SIGNED
        locked.attempts = F("attempts") + 1
        locked.save(update_fields=["nonce", "raw_tx", "tx_hash", "status", "attempts", "updated_at"])
        nonce_row.next_nonce = nonce + 1
        nonce_row.save(update_fields=["next_nonce"])


def _signer(address: str) -> LocalAccount:
    operator = gateway.operator()
    if address.lower() == operator.address.lower():
        return operator
    from dataspace.accounts.services import custodial_account

    return custodial_account(address=address)


def _mined_or_pending(w3: Web3, tx_hash: str) -> bool:
    try:
        w3.eth.get_transaction(HexBytes(tx_hash))
        return True
    except TransactionNotFound:
        return False


def _broadcast(tx: ChainTransaction) -> None:
    w3 = gateway.connected_web3()
    try:
        w3.eth.send_raw_transaction(bytes(tx.raw_tx or b""))
    except Web3RPCError as exc:
        message = str(exc).lower()
        if "already known" in message or "already imported" in message:
            pass  # our earlier broadcast arrived
        elif "nonce too low" in message and not _mined_or_pending(w3, tx.tx_hash):
            # The nonce went to another transaction and ours can never be mined: replace it,
            # explicitly and logged, by signing again with a fresh nonce.
            logger.warning("chain write %s lost nonce %s; re-signing", tx.idempotency_key, tx.nonce)
            ChainTransaction.objects.filter(pk=tx.pk, status=Status.SIGNED).update(
                status=Status.PENDING, nonce=None, raw_tx=None, tx_hash="", last_error="nonce taken; re-signed"
            )
            return
        elif "nonce too low" not in message:
            ChainTransaction.objects.filter(pk=tx.pk).update(last_error=str(exc)[:2000])
            raise gateway.ChainUnavailable(f"The node refused the transaction for now: {exc}") from None
    except Exception as exc:
        raise gateway.ChainUnavailable(f"Broadcast failed ({type(exc).__name__}).") from None
    ChainTransaction.objects.filter(pk=tx.pk, status=Status.SIGNED).update(
        status=Status.SENT, broadcasts=F("broadcasts") + 1
    )


def _confirm(tx: ChainTransaction) -> None:
    w3 = gateway.connected_web3()
    try:
        receipt = w3.eth.get_transaction_receipt(HexBytes(tx.tx_hash))
    except TransactionNotFound:
        if not _mined_or_pending(w3, tx.tx_hash):
            # The node forgot it (restart, eviction): send the same bytes again.
            ChainTransaction.objects.filter(pk=tx.pk, status=Status.SENT).update(status=Status.SIGNED)
        return
    except Exception as exc:
        raise gateway.ChainUnavailable(f"Receipt lookup failed ({type(exc).__name__}).") from None
    if w3.eth.block_number - receipt["blockNumber"] < settings.CHAIN_CONFIRMATIONS:
        return  # mined but not yet deep enough
    block_hash = "0x" + bytes(receipt["blockHash"]).hex()
    if receipt["status"] == 0:
        _fail(tx, _replay_revert(tx, receipt["blockNumber"]))
        ChainTransaction.objects.filter(pk=tx.pk).update(
            block_number=receipt["blockNumber"], block_hash=block_hash, gas_used=receipt["gasUsed"]
        )
        return
    ChainTransaction.objects.filter(pk=tx.pk, status=Status.SENT).update(
        status=Status.CONFIRMED,
        block_number=receipt["blockNumber"],
        block_hash=block_hash,
        gas_used=receipt["gasUsed"],
        confirmed_at=timezone.now(),
    )


def _replay_revert(tx: ChainTransaction, block: int) -> str:
    try:
        _call(tx).call({"from": tx.sender}, block_identifier=block - 1)
    except ContractLogicError as exc:
        return gateway.revert_reason(exc)
    except Exception:  # noqa: S110 - the reason is a courtesy; the failure itself is recorded
        pass
    return "reverted (reason not recoverable)"


def writes_to_retry(*, older_than_seconds: int) -> list[int]:
    """Unfinished writes nobody has touched for a while (lost messages, exhausted retries)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    unfinished = ChainTransaction.objects.filter(
        status__in=[Status.PENDING, Status.SIGNED, Status.SENT], updated_at__lt=cutoff
    )
    return list(unfinished.order_by("pk").values_list("pk", flat=True)[:500])


def write_find(*, idempotency_key: str) -> ChainTransaction | None:
    """The write queued under ``idempotency_key`` on this chain, if any."""
    return ChainTransaction.objects.filter(chain_id=gateway.chain_id(), idempotency_key=idempotency_key).first()


def writes_confirmed(*, kind: str) -> list[ChainTransaction]:
    """Every confirmed write of one kind on this chain (e.g. the platform's registrations)."""
    return list(ChainTransaction.objects.filter(chain_id=gateway.chain_id(), kind=kind, status=Status.CONFIRMED))


def write_unfinished(*, key_prefixes: tuple[str, ...]) -> ChainTransaction | None:
    """The oldest write on this chain, not yet confirmed or failed, whose idempotency key starts
    with one of ``key_prefixes`` (a flow that must not overtake its own earlier write)."""
    keys = Q()
    for prefix in key_prefixes:
        keys |= Q(idempotency_key__startswith=prefix)
    unfinished = ChainTransaction.objects.filter(
        keys, chain_id=gateway.chain_id(), status__in=[Status.PENDING, Status.SIGNED, Status.SENT]
    )
    return unfinished.order_by("pk").first()
