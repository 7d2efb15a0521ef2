from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count
from web3 import Web3

from dataspace.chain import deploy, gateway
from dataspace.chain.models import ChainTransaction, Deployment, IndexerCursor


class Command(BaseCommand):
    help = "Chain operations: `chain status` (node, contracts, operator, outbox backlog), `chain deploy`."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="node, chain id, block, contract addresses, operator balance, outbox backlog")
        deploy_parser = sub.add_parser("deploy", help="deploy the contracts (or find them) and record their addresses")
        deploy_parser.add_argument(
            "--custodian", default=None, help="the custodian's receipt address (default: CUSTODIAN_ADDRESS)"
        )
        rotate = sub.add_parser("rotate-custodian", help="make ADDRESS the custodian's receipt address from now on")
        rotate.add_argument("address")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "status":
            self._status()
        elif options["action"] == "deploy":
            try:
                for line in deploy.deploy_all(custodian=options["custodian"]):
                    self.stdout.write(line)
            except gateway.ChainUnavailable as exc:
                raise CommandError(exc.message) from None
        elif options["action"] == "rotate-custodian":
            if not Web3.is_address(options["address"]):
                raise CommandError(f"{options['address']!r} is not an address.")
            try:
                self.stdout.write(deploy.custodian_register(address=options["address"]))
            except gateway.ChainUnavailable as exc:
                raise CommandError(exc.message) from None

    def _status(self) -> None:
        try:
            w3 = gateway.connected_web3()
        except gateway.ChainUnavailable as exc:
            raise CommandError(exc.message) from None
        operator = gateway.operator().address
        self.stdout.write(f"node        {w3.provider.endpoint_uri}")  # type: ignore[attr-defined]
        self.stdout.write(f"chain id    {w3.eth.chain_id}")
        self.stdout.write(f"block       {w3.eth.block_number}")
        self.stdout.write(f"operator    {operator} ({Web3.from_wei(w3.eth.get_balance(operator), 'ether')} ETH)")
        for deployed in Deployment.objects.filter(chain_id=gateway.chain_id()).order_by("name"):
            self.stdout.write(f"contract    {deployed.name:<17} {deployed.address} (block {deployed.block_number})")
        backlog = dict(
            ChainTransaction.objects.filter(chain_id=gateway.chain_id())
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        self.stdout.write("outbox      " + (", ".join(f"{k} {v}" for k, v in sorted(backlog.items())) or "empty"))
        cursor = IndexerCursor.objects.filter(chain_id=gateway.chain_id()).first()
        self.stdout.write(f"indexed to  {cursor.block_number if cursor else 'nothing yet'}")
