"""``manage.py demo seed``: the demo users, the synthetic registry and a market ready for a job."""

import time
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from dataspace.accounts.models import Role, User, Wallet
from dataspace.accounts.services import user_create, wallet_create_custodial
from dataspace.catalog import services
from dataspace.catalog.models import Dataset
from dataspace.catalog.uploads import seal_chunks
from dataspace.chain import agents, gateway, outbox
from dataspace.compute.stores import encrypted_store_build
from dataspace.demo.synthetic import REGISTRY_ENCRYPTION, registry_csv_chunks
from dataspace.policies import odrl
from dataspace.policies import services as policies
from dataspace.policies.models import Agreement, Offer
from dataspace.privacy import onchain as privacy_onchain

DEMO_USERS: list[tuple[str, str, list[Role]]] = [
    ("provider", "redlake-provider", [Role.PROVIDER]),
    ("consumer", "redlake-consumer", [Role.CONSUMER]),
    ("auditor", "redlake-auditor", [Role.AUDITOR]),
    ("operator", "redlake-operator", [Role.OPERATOR]),
]
DEMO_TITLE = "Hospital registry (synthetic)"
DEMO_TOKENS = 10_000 * 10**18


def wait_until(done: Callable[[], bool], *, timeout: float) -> bool:
    """Polls ``done`` until it holds or ``timeout`` seconds pass (the chain mines in between)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


class Command(BaseCommand):
    help = "Demo data: `demo seed` creates the demo users and the synthetic hospital registry (idempotent)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        seed = sub.add_parser("seed")
        seed.add_argument("--rows", type=int, default=100_000)

    def handle(self, *args: Any, **options: Any) -> None:
        for username, password, roles in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = user_create(username=username, password=password, email=f"{username}@redlake.test", roles=roles)
                if Role.OPERATOR in roles:
                    user.is_superuser = True
                    user.save(update_fields=["is_superuser"])
                wallet_create_custodial(user=user)
            self.stdout.write(f"  {username:<9} password {password:<18} roles {', '.join(user.roles)}")
        self._fund_demo_wallets()
        provider = User.objects.get(username="provider")
        existing = Dataset.objects.filter(provider=provider, title=DEMO_TITLE).first()
        if existing is not None:
            self.stdout.write(f"demo dataset '{DEMO_TITLE}' already present")
            self._demo_market(existing)
            return
        rows = options["rows"]
        upload = seal_chunks(registry_csv_chunks(rows), name="hospital_registry.csv")
        ingest = services.ingest_start(
            provider=provider,
            upload=upload,
            metadata=services.DatasetMetadata(
                title=DEMO_TITLE,
                description=f"{rows:,} synthetic patient records: age, sex, region, BMI, blood pressure, "
                "cholesterol, diagnosis, cost and admission date. Seeded, so every run is identical.",
                keywords=["health", "registry", "synthetic"],
                licence="CC-BY-4.0",
                public_value_columns=["sex", "region", "diagnosis"],
                # Personal data: every answer noised, epsilon 1 in all for every consumer together.
                privacy_epsilon=1.0,
                encryption=REGISTRY_ENCRYPTION,
            ),
        )
        # One transaction: the encrypted store is built before the ingest's follow-ups are sent,
        # so none of them queues a second build of it.
        with transaction.atomic():
            dataset = services.ingest_run(ingest_id=ingest.id)
            if dataset is not None:
                encrypted_store_build(dataset_id=dataset.id)
        if dataset is None:
            ingest.refresh_from_db()
            raise SystemExit(f"demo ingest failed: {ingest.error_code}: {ingest.error_message}")
        self.stdout.write(
            f"demo dataset '{dataset.title}': {dataset.row_count:,} rows, sha256 {dataset.content_sha256[:16]}…"
        )
        self._demo_market(dataset)

    def _demo_market(self, dataset: Dataset) -> None:
        """The dataset encrypted, registered on chain, offered, and the offer accepted by the demo
        consumer: done here, synchronously, so the platform starts ready for a first job."""
        encrypted_store_build(dataset_id=dataset.id)  # a no-op once built
        try:
            gateway.connected_web3()
        except gateway.ChainUnavailable as exc:
            self.stdout.write(f"demo offer not published: {exc.message}")
            return
        if dataset.chain_registration is None:
            services.dataset_register_on_chain(dataset_id=dataset.id)
            dataset.refresh_from_db()
        assert dataset.chain_registration is not None
        outbox.write_progress(tx_id=dataset.chain_registration.pk)
        dataset.refresh_from_db()
        # The dataset's privacy budget pinned on chain (the provider's wallet sends it).
        wait_until(lambda: privacy_onchain.terms_progress(dataset_id=dataset.id), timeout=20)
        offer = Offer.objects.filter(dataset=dataset).exclude(status=Offer.Status.FAILED).first()
        if offer is None:
            offer = policies.offer_publish(
                provider=dataset.provider,
                dataset=dataset,
                terms=odrl.Terms(
                    purposes=["public-health", "research"],
                    operations=[
                        "count",
                        "sum",
                        "mean",
                        "variance",
                        "group_by",
                        "histogram",
                        "covariance",
                        "linear_regression",
                    ],
                    max_calls=1000,
                    price_per_call=10**18,
                    duration_seconds=365 * 86400,
                    privacy_budget=1.0,  # a consumer may spend the dataset's whole epsilon
                    min_cohort=10,
                ),
            )
        wait_until(lambda: policies.offer_progress(offer_id=offer.id), timeout=20)
        offer.refresh_from_db()
        consumer = User.objects.get(username="consumer")
        agreement = Agreement.objects.filter(offer=offer, consumer=consumer).first()
        if agreement is None and offer.status == Offer.Status.PUBLISHED:
            agreement = policies.agreement_create(consumer=consumer, offer=offer, calls=100)
        if agreement is not None:
            # Approve, then accept: a few blocks on the development chain.
            wait_until(lambda: policies.agreement_progress(agreement_id=agreement.id), timeout=20)
            agreement.refresh_from_db()
        self.stdout.write(
            f"demo offer {offer.id} ({offer.status}); consumer agreement "
            f"{agreement.id if agreement else '-'} ({agreement.status if agreement else 'none'})"
        )

    def _fund_demo_wallets(self) -> None:
        """On the development chain, each demo wallet gets ether for gas and DEMO_TOKENS rEUR,
        minted through the outbox (once per wallet, whatever the number of runs)."""
        try:
            gateway.deployment("DevToken")
            gateway.connected_web3()
        except gateway.ChainUnavailable as exc:
            self.stdout.write(f"demo wallets not funded: {exc.message}")
            return
        token = agents.DevTokenAgent()
        for wallet in Wallet.objects.filter(user__username__in=[u for u, _, _ in DEMO_USERS]):
            agents.fund_for_gas(address=wallet.address, wei=10 * 10**18)
            mint = token.mint(to=wallet.address, amount=DEMO_TOKENS, key=f"demo-mint:{wallet.address}")
            outbox.write_progress(tx_id=mint.pk)
        self.stdout.write(f"demo wallets funded: 10 ETH and {DEMO_TOKENS // 10**18:,} rEUR each")
