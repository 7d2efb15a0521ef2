"""The typed client: every consumer endpoint, with retries, timeouts and stable error codes.

Retries: a 429 or 503 is retried with exponential backoff and jitter, honouring ``Retry-After``;
a dropped connection is retried only for requests that are safe to repeat (reads, and job
submissions, which always carry an ``Idempotency-Key``: the platform returns the first job for a
repeated key, so a retry never makes a second job or a second charge)."""

from __future__ import annotations

import email.utils
import random
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from uuid import UUID

import httpx

from redlake_client import config, encoding
from redlake_client.errors import (
    ApiError,
    ChainMismatch,
    JobFailed,
    NetworkError,
    TamperedResponse,
    api_error,
)
from redlake_client.models import (
    Agreement,
    Algorithm,
    Budget,
    Dataset,
    IssuedToken,
    Job,
    Me,
    Model,
    Offer,
    Operation,
    Space,
    Wallet,
)
from redlake_client.signing import Signer

M = TypeVar("M", bound=Model)
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_URL = "http://127.0.0.1:8000"
SIGNATURE_TTL_SECONDS = 3600


def new_idempotency_key() -> str:
    return "sdk-" + secrets.token_hex(16)


class Client:
    """A consumer's session with one Redlake space."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 20.0,
        rpc_url: str | None = None,
        custodians: list[str] | None = None,
        chain_id: int | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``chain_id``: the chain you expect the space on (else ``REDLAKE_CHAIN_ID``); the space's
        answer and your node must both be that chain. ``sleep``: how the client waits between
        retries and polls (``time.sleep``), ``clock`` the wall clock a ``Retry-After`` date is read
        against (``time.time``): injectable, so tests see the delays asked for."""
        self.url = (url or config.setting("url", "REDLAKE_URL", DEFAULT_URL)).rstrip("/")
        self.token = token if token is not None else config.setting("token", "REDLAKE_TOKEN")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.rpc_url = rpc_url or config.setting("rpc_url", "REDLAKE_RPC_URL")
        pinned = custodians if custodians is not None else config.setting("custodians", "REDLAKE_CUSTODIANS")
        self.pinned_custodians = [c.strip() for c in pinned.split(",")] if isinstance(pinned, str) else pinned
        expected = chain_id if chain_id is not None else config.setting("chain_id", "REDLAKE_CHAIN_ID")
        self.expected_chain_id = int(expected) if expected else None
        self.custodian_registry = config.setting("custodian_registry", "REDLAKE_CUSTODIAN_REGISTRY")
        self._sleep = sleep or time.sleep
        self._clock = clock or time.time
        headers = {"Accept": "application/json", "User-Agent": "redlake-client/0.1"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        self._http = httpx.Client(base_url=self.url + "/api/", timeout=timeout, headers=headers, transport=transport)
        self._space: Space | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and (after := response.headers.get("Retry-After")):
            try:
                return max(0.0, min(float(after), self.max_backoff))
            except ValueError:
                pass
            try:  # the other form RFC 9110 allows: an HTTP date
                when = email.utils.parsedate_to_datetime(after).timestamp()
                return max(0.0, min(when - self._clock(), self.max_backoff))
            except (TypeError, ValueError):
                pass
        return float(min(self.backoff * 2**attempt, self.max_backoff) * (0.5 + random.random() / 2))

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        repeatable: bool | None = None,
    ) -> httpx.Response:
        """One API call with the retry policy; an error answer raises its typed ``ApiError``."""
        if repeatable is None:
            repeatable = method in ("GET", "HEAD", "DELETE") or bool(headers and "Idempotency-Key" in headers)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path.lstrip("/"), json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                if not repeatable or attempt >= self.retries:
                    raise NetworkError(f"{method} {self.url}/api/{path.lstrip('/')} failed: {exc!r}") from None
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self._sleep(self._delay(attempt, response))
                attempt += 1
                continue
            if response.status_code >= 400:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                raise api_error(response.status_code, body)
            return response

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        return model.model_validate(self.request("GET", path, params=params or None).json())

    def _paginate(self, path: str, model: type[M], page_size: int = 50, **params: Any) -> Iterator[M]:
        """Every item of a paginated list, page after page (LimitOffset: ``next`` links)."""
        offset = 0
        while True:
            query = {k: v for k, v in params.items() if v is not None}
            body = self.request("GET", path, params={**query, "limit": page_size, "offset": offset}).json()
            for item in body["results"]:
                yield model.model_validate(item)
            if not body.get("next"):
                return
            offset += page_size

    # ------------------------------------------------------------------ accounts

    @classmethod
    def login(cls, url: str, username: str, password: str, *, ttl_hours: int | None = None, **kwargs: Any) -> Client:
        """A client holding a fresh token for ``username``."""
        anonymous = cls(url, token="", **kwargs)
        body: dict[str, Any] = {"username": username, "password": password}
        if ttl_hours:
            body["ttl_hours"] = ttl_hours
        issued = IssuedToken.model_validate(anonymous.request("POST", "auth/token/", json=body).json())
        anonymous.close()
        client = cls(url, token=issued.token, **kwargs)
        client.issued = issued
        return client

    issued: IssuedToken | None = None

    def me(self) -> Me:
        return self._get("me/", Me)

    def revoke_token(self, token_key: str) -> None:
        self.request("DELETE", f"auth/tokens/{token_key}/")

    def register_wallet(self, signer: Signer) -> Wallet:
        """Links the signer's address to the account: it signs the platform's single-use
        challenge locally (EIP-191); the key stays here."""
        challenge = self.request("POST", "me/wallet/challenge/").json()
        body = {
            "nonce": challenge["nonce"],
            "address": signer.address,
            "signature": signer.sign_message(challenge["message"]),
        }
        return Wallet.model_validate(self.request("POST", "me/wallet/register/", json=body).json())

    # ------------------------------------------------------------------ catalogue

    def datasets(self, search: str | None = None, keyword: str | None = None) -> Iterator[Dataset]:
        return self._paginate("datasets/", Dataset, search=search, keyword=keyword)

    def dataset(self, dataset_id: UUID | str) -> Dataset:
        return self._get(f"datasets/{dataset_id}/", Dataset)

    def encrypted_store(self, dataset_id: UUID | str) -> dict[str, Any]:
        return dict(self.request("GET", f"datasets/{dataset_id}/encrypted-store/").json())

    def operations(self) -> list[Operation]:
        return [Operation.model_validate(o) for o in self.request("GET", "operations/").json()]

    def offers(self, dataset: UUID | str | None = None) -> Iterator[Offer]:
        return self._paginate("offers/", Offer, dataset=str(dataset) if dataset else None)

    def offer(self, offer_id: UUID | str) -> Offer:
        return self._get(f"offers/{offer_id}/", Offer)

    # ------------------------------------------------------------------ agreements

    def agreements(self) -> Iterator[Agreement]:
        return self._paginate("agreements/", Agreement)

    def agreement(self, agreement_id: UUID | str) -> Agreement:
        return self._get(f"agreements/{agreement_id}/", Agreement)

    def budget(self, agreement_id: UUID | str) -> Budget:
        return self._get(f"agreements/{agreement_id}/budget/", Budget)

    def accept_offer(
        self, offer_id: UUID | str, calls: int, *, signer: Signer | None = None, timeout: float = 120
    ) -> Agreement:
        """Accepts an offer for ``calls`` calls and returns the active agreement.

        With ``signer`` (an own wallet): approve and acceptOffer are sent from that wallet
        straight to the chain, then the platform is shown the transaction and registers the
        agreement from the chain's record. Without: the platform's custodial wallet does both."""
        offer = self.offer(offer_id)
        if signer is None:
            created = Agreement.model_validate(
                self.request("POST", "agreements/", json={"offer": str(offer.id), "calls": calls}).json()
            )
            return self.wait_agreement(created.id, timeout=timeout)
        if offer.chain_offer_id is None:
            raise ApiError("offer_not_published", "The offer is not published on chain.", status=409)
        chain = self.chain()
        _, accept_tx, _ = chain.approve_and_accept(
            signer, offer_id=offer.chain_offer_id, calls=calls, amount=calls * offer.price_per_call
        )
        return self.register_agreement(offer.id, accept_tx)

    def register_agreement(self, offer_id: UUID | str, accept_tx: str) -> Agreement:
        body = {"offer": str(offer_id), "accept_tx": accept_tx}
        return Agreement.model_validate(self.request("POST", "agreements/", json=body).json())

    def wait_agreement(self, agreement_id: UUID | str, *, timeout: float = 120, poll: float = 0.5) -> Agreement:
        deadline = time.monotonic() + timeout
        while True:
            agreement = self.agreement(agreement_id)
            if agreement.status != "pending":
                if agreement.status != "active":
                    raise ApiError("agreement_not_active", f"The agreement failed: {agreement.failure}", status=409)
                return agreement
            if time.monotonic() > deadline:
                raise NetworkError(f"The agreement {agreement_id} is still pending after {timeout:g} s.")
            self._sleep(poll)

    # ------------------------------------------------------------------ algorithms (TEE)

    def submit_algorithm(
        self,
        offer_id: UUID | str,
        source: str,
        *,
        output_schema: dict[str, Any],
        max_output_bytes: int,
        kind: str = "python",
        lockfile: dict[str, str] | None = None,
        name: str = "",
    ) -> Algorithm:
        """Submits an algorithm for an offer that allows ``algorithm``: a Python module defining
        ``run(tables, params)`` (``lockfile``: the worker runtime's packages it imports, by
        version) or, with ``kind="sql"``, a DuckDB SQL template over the table ``data``; plus the
        result's JSON Schema and maximum size. The offer's provider reads the code and approves
        its ``measurement`` (``wait_algorithm``). Not retried after a dropped connection (a
        repeat would submit it twice): list ``algorithms()`` to see whether it arrived."""
        body: dict[str, Any] = {
            "offer": str(offer_id),
            "kind": kind,
            "source": source,
            "output_schema": output_schema,
            "max_output_bytes": max_output_bytes,
            "lockfile": lockfile or {},
            "name": name,
        }
        return Algorithm.model_validate(self.request("POST", "algorithms/", json=body).json())

    def algorithms(self) -> Iterator[Algorithm]:
        return self._paginate("algorithms/", Algorithm)

    def algorithm(self, algorithm_id: UUID | str) -> Algorithm:
        return self._get(f"algorithms/{algorithm_id}/", Algorithm)

    def wait_algorithm(self, algorithm_id: UUID | str, *, timeout: float = 3600, poll: float = 2.0) -> Algorithm:
        """Waits for the provider's decision, confirmed on chain: returns the approved algorithm;
        raises ``ApiError`` (``algorithm_not_approved``) if it was rejected, revoked or the chain
        refused the approval."""
        deadline = time.monotonic() + timeout
        while True:
            algorithm = self.algorithm(algorithm_id)
            if algorithm.status == "approved":
                return algorithm
            if algorithm.status in ("rejected", "revoked", "revoking", "failed"):
                reason = f": {algorithm.reason}" if algorithm.reason else ""
                raise ApiError("algorithm_not_approved", f"The algorithm is {algorithm.status}{reason}.", status=409)
            if time.monotonic() > deadline:
                raise NetworkError(f"The algorithm {algorithm_id} is still {algorithm.status} after {timeout:g} s.")
            self._sleep(poll)

    def submit_algorithm_job(
        self,
        agreement_id: UUID | str,
        algorithm_id: UUID | str,
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Job:
        """``submit_job`` for the operation ``algorithm``: runs the approved algorithm in a TEE
        over the agreement's dataset with ``params`` (its own JSON parameters)."""
        body = {"algorithm": str(algorithm_id), "params": params or {}}
        return self.submit_job(agreement_id, "algorithm", body, **kwargs)

    def run_algorithm(
        self,
        agreement_id: UUID | str,
        algorithm_id: UUID | str,
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Job:
        """Submits an algorithm job and waits for its result (``run`` for ``algorithm``); the
        job's receipt names the TEE type (SIMULATED for the sandbox) and the measurement."""
        body = {"algorithm": str(algorithm_id), "params": params or {}}
        return self.run(agreement_id, "algorithm", body, **kwargs)

    # ------------------------------------------------------------------ jobs

    def jobs(self) -> Iterator[Job]:
        return self._paginate("jobs/", Job)

    def job(self, job_id: UUID | str) -> Job:
        return self._get(f"jobs/{job_id}/", Job)

    def submit_job(
        self,
        agreement_id: UUID | str,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        purpose: str = "research",
        epsilon: float = 0.0,
        signer: Signer | None = None,
        idempotency_key: str | None = None,
        nonce: int | None = None,
    ) -> Job:
        """Asks for a computation. Always sends an ``Idempotency-Key`` (a new one unless given):
        retried after a dropped connection, the platform answers with the same job.

        With ``signer``, the consumer's key signs the EIP-712 Usage message here: every field is
        recomputed locally and compared with what the platform says to sign (a mismatch is
        ``TamperedResponse`` and nothing is signed)."""
        params = params or {}
        key = idempotency_key or new_idempotency_key()
        body: dict[str, Any] = {
            "agreement": str(agreement_id),
            "operation": operation,
            "params": params,
            "purpose": purpose,
            "epsilon": epsilon,
        }
        if signer is not None:
            body.update(self._sign_usage(body, signer, nonce=nonce))
        response = self.request("POST", "jobs/", json=body, headers={"Idempotency-Key": key})
        job = Job.model_validate(response.json())
        job.idempotency_key = key
        return job

    def _sign_usage(self, body: dict[str, Any], signer: Signer, *, nonce: int | None) -> dict[str, Any]:
        nonce = nonce or secrets.randbelow(2**127) + 1
        deadline = int(time.time()) + SIGNATURE_TTL_SECONDS
        quoted = self.request("POST", "jobs/usage/", json={**body, "nonce": nonce, "deadline": deadline}).json()
        typed_data = quoted["typed_data"]
        self._check_usage(typed_data, body, nonce=nonce, deadline=deadline)
        return {"nonce": nonce, "deadline": deadline, "signature": signer.sign_typed_data(typed_data)}

    def _check_usage(self, typed_data: dict[str, Any], body: dict[str, Any], *, nonce: int, deadline: int) -> None:
        """Recomputes what the consumer is asked to sign; only the privacy loss is the platform's
        word (its epsilon-to-rho conversion), and it must stay below epsilon."""
        agreement = self.agreement(body["agreement"])
        space = self.space()
        if agreement.chain_agreement_id is None:
            raise TamperedResponse("The agreement has no id on chain.")
        chain_agreement = agreement.chain_agreement_id
        message = typed_data["message"]
        domain = typed_data["domain"]
        expected = {
            "agreementId": chain_agreement,
            "jobId": encoding.hex32(encoding.job_chain_id(agreement_id=chain_agreement, nonce=nonce)),
            "purpose": encoding.hex32(encoding.label_hash(body["purpose"])),
            "operation": encoding.hex32(encoding.label_hash(body["operation"])),
            "paramsHash": encoding.hex32(encoding.params_hash(body["params"])),
            "nonce": nonce,
            "deadline": deadline,
        }
        wrong = [k for k, v in expected.items() if str(message.get(k)).lower() != str(v).lower()]
        if domain.get("chainId") != space.chain_id:
            wrong.append("domain.chainId")
        if str(domain.get("verifyingContract", "")).lower() != space.address("UsageAgreements").lower():
            wrong.append("domain.verifyingContract")
        loss = int(message.get("privacyLoss", -1))
        if not 0 <= loss <= round(float(body["epsilon"]) * 1e9):
            wrong.append("privacyLoss")
        if wrong:
            raise TamperedResponse(f"The platform asked to sign a Usage message that differs in {', '.join(wrong)}.")

    def wait_job(
        self,
        job_id: UUID | str,
        *,
        timeout: float = 600,
        poll: float = 0.3,
        on_status: Callable[[Job], None] | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Polls a job until it ends (reconnecting through network drops: a job is resumed by its
        id, never submitted again). Raises ``JobFailed`` if it ends without a result."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                job = self.job(job_id)
            except NetworkError:
                if time.monotonic() > deadline:
                    raise
                self._sleep(poll)
                continue
            if on_status is not None and job.status != last:
                on_status(job)
            last = job.status
            if job.finished:
                if raise_on_failure and job.status != "settled":
                    code = job.failure.code if job.failure else None
                    message = job.failure.message if job.failure else job.status
                    raise JobFailed(f"The job ended {job.status}: {message}", status=job.status, code=code, job=job)
                return job
            if time.monotonic() > deadline:
                raise NetworkError(f"The job {job_id} is still {job.status} after {timeout:g} s; resume it by id.")
            self._sleep(poll)

    def run(
        self,
        agreement_id: UUID | str,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        on_status: Callable[[Job], None] | None = None,
        timeout: float = 600,
        poll: float = 0.3,
        **kwargs: Any,
    ) -> Job:
        """Submits a job and waits for its result (polling every ``poll`` seconds)."""
        job = self.submit_job(agreement_id, operation, params, **kwargs)
        finished = self.wait_job(job.id, on_status=on_status, timeout=timeout, poll=poll)
        finished.idempotency_key = job.idempotency_key
        return finished

    # ------------------------------------------------------------------ the space on chain

    def space(self) -> Space:
        """Where the space lives on chain (``GET /api/space/``): its chain id (refused if it is
        not the chain you expect: ``ChainMismatch``), node, contracts, token and custodians."""
        if self._space is None:
            space = Space.model_validate(self.request("GET", "space/").json())
            if self.expected_chain_id is not None and space.chain_id != self.expected_chain_id:
                raise ChainMismatch(
                    f"The platform at {self.url} says the space runs on chain {space.chain_id}, but you "
                    f"expect chain {self.expected_chain_id}: refusing to read or sign for the wrong chain."
                )
            self._space = space
        return self._space

    def chain(self) -> Any:
        """A direct connection to the space's chain through your node (``rpc_url``, else the one
        the space publishes), checked to have the space's chain id."""
        from redlake_client.chain import Chain

        space = self.space()
        return Chain(
            self.rpc_url or space.rpc_url,
            usage_agreements=space.address("UsageAgreements"),
            expected_chain_id=space.chain_id,
        )

    def verify(self, job: Job | UUID | str) -> Any:
        from redlake_client.verify import verify

        return verify(self, job if isinstance(job, Job) else self.job(job))
