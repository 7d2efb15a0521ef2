"""What the platform answers, as pydantic models. Unknown fields are kept (``extra="allow"``), so
a newer platform does not break an older SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

FINAL_STATES = frozenset({"settled", "withheld", "rejected", "refunded", "failed"})
JOB_STATES = (
    "requested",
    "authorised",
    "computed",
    "released",
    "settled",
    "withheld",
    "rejected",
    "failed",
    "refunded",
)


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


T = TypeVar("T", bound=Model)


class Page(Model, Generic[T]):
    count: int
    next: str | None = None
    previous: str | None = None
    results: list[T]


class Wallet(Model):
    kind: str
    address: str
    created_at: datetime | None = None


class Me(Model):
    username: str
    email: str = ""
    roles: list[str] = Field(default_factory=list)
    wallet: Wallet | None = None


class IssuedToken(Model):
    token: str
    token_key: str
    expiry: datetime | None = None


class ChainWrite(Model):
    status: str
    tx_hash: str | None = None
    block_number: int | None = None
    revert_reason: str | None = None


class Dataset(Model):
    id: UUID
    title: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    licence: str | None = None
    provider: str
    content_sha256: str
    non_personal: bool = False
    privacy_epsilon: float | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    chain: ChainWrite | None = None
    created_at: datetime | None = None


class Offer(Model):
    id: UUID
    dataset: UUID
    provider: str
    purposes: list[str]
    operations: list[str]
    max_calls: int
    price_per_call: int
    duration_seconds: int
    privacy_budget: float
    min_cohort: int
    policy_hash: str
    status: str
    chain_offer_id: int | None = None
    publish_tx: ChainWrite | None = None


class Agreement(Model):
    id: UUID
    offer: UUID
    consumer: str
    calls: int
    amount: int
    status: str
    failure: str = ""
    chain_agreement_id: int | None = None
    expires_at: datetime | None = None
    calls_reserved: int = 0
    approve_tx: ChainWrite | None = None
    accept_tx: ChainWrite | None = None


class Budget(Model):
    agreement: UUID
    calls: int
    calls_used: int
    calls_left: int
    expires_at: datetime | None = None
    non_personal: bool
    epsilon_share: float
    epsilon_left: float


class Operation(Model):
    name: str
    description: str
    engine: str = "he"  # "he" (over ciphertexts) or "tee" (``algorithm``: an approved algorithm in a TEE)
    depth: int | None = None  # None for the tee engine
    parameters: Any
    output: str
    precision_significant_digits: int | None = None


class Algorithm(Model):
    """An algorithm submitted for an offer (``POST /api/algorithms/``) and its provider's decision:
    a job can run it once ``status`` is ``approved`` (pinned on chain with its ``measurement``)."""

    id: UUID
    offer: UUID
    consumer: str
    name: str = ""
    kind: str
    bundle: dict[str, Any]
    bundle_sha256: str
    measurement: str
    status: str
    reason: str = ""
    approve_tx: ChainWrite | None = None
    revoke_tx: ChainWrite | None = None
    created_at: datetime
    decided_at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.status == "approved"


class JobTransactions(Model):
    record_usage: ChainWrite | None = None
    settle: ChainWrite | None = None
    refund: ChainWrite | None = None


class Failure(Model):
    code: str
    message: str


class Receipt(Model):
    """The key custodian's signed receipt (EIP-191 over its canonical JSON minus ``signature``)."""

    job_id: str
    operation: str
    parameters: dict[str, Any]
    dataset_sha256: str
    result_sha256: str
    result_salt: str
    noise: dict[str, Any] = Field(default_factory=dict)
    withheld: dict[str, Any] | None = None
    custodian: str
    signature: str


class Job(Model):
    id: UUID
    status: str
    agreement: UUID
    dataset: UUID
    operation: str
    params: dict[str, Any]
    purpose: str
    epsilon: float
    chain_job_id: str | None = None
    signed_by_platform: bool = True
    timestamps: dict[str, datetime | None] = Field(default_factory=dict)
    transactions: JobTransactions | None = None
    result: Any = None
    error_bounds: Any = None
    result_hash: str | None = None
    receipt: dict[str, Any] | None = None
    failure: Failure | None = None
    # Client-side: the Idempotency-Key this session submitted the job with (resubmit safely with it).
    idempotency_key: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATES

    def signed_receipt(self) -> Receipt | None:
        return None if self.receipt is None else Receipt.model_validate(self.receipt)

    def frame(self) -> Any:
        """The result as a pandas DataFrame (``redlake_client.results.to_frame``)."""
        from redlake_client.results import to_frame

        return to_frame(self)


class Custodian(Model):
    """A receipt-signing address and the blocks it was valid at (``valid_until_block``
    exclusive; None: valid now). The platform's word: ``verify`` asks CustodianRegistry itself."""

    address: str
    valid_from_block: int = 0
    valid_until_block: int | None = None


class Contract(Model):
    name: str
    address: str
    deployed_block: int | None = None
    tx_hash: str | None = None


class Token(Model):
    address: str
    symbol: str | None = None
    decimals: int | None = None


class Tee(Model):
    backend: str
    label: str | None = None
    simulated: bool = True


class Space(Model):
    """Where the space lives on chain (``GET /api/space/``, see ``Client.space``)."""

    chain_id: int
    rpc_url: str
    contracts: list[Contract]
    token: Token | None = None
    custodians: list[Custodian] = Field(default_factory=list)
    tee: Tee | None = None

    def address(self, name: str) -> str:
        """The address of the space's contract ``name``."""
        for contract in self.contracts:
            if contract.name == name:
                return contract.address
        from redlake_client.errors import RedlakeError

        raise RedlakeError(f"The space publishes no {name} contract (GET /api/space/).")
