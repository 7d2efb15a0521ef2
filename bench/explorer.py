"""The explorer's agreement page for an agreement with 1,000 uses, rendered in headless Chromium
against a real anvil: from navigation to every event of the timeline on screen.

The chain is filled directly with anvil's development accounts (a non-personal dataset, one
offer, one agreement of 1,000 calls, 1,000 recordUsage with the consumer's EIP-712 signature and
1,000 settle). The portal's built page is served by a static server with the two answers the
explorer needs from the platform (/api/me/, /api/space/): only the chain is measured.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USES = 1000
PER_BLOCK = 250
PROVIDER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1
CONSUMER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil account 2


def main() -> None:
    from tests.support.anvil import AnvilNode

    work = Path(tempfile.mkdtemp(prefix="redlake-bench-explorer-"))
    node = AnvilNode(work / "anvil.json").start()
    os.environ.update(DJANGO_SETTINGS_MODULE="dataspace.settings", REDLAKE_VAR_DIR=str(work), CHAIN_RPC_URL=node.url)
    os.environ.pop("DATABASE_URL", None)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        contracts, agreement_id = fill_chain()
        seconds = render(work, node.url, contracts, agreement_id)
        report(seconds)
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)


def fill_chain() -> tuple[dict[str, str], int]:
    from eth_account import Account

    from dataspace.chain import deploy, eip712, gateway
    from dataspace.chain.encoding import dataset_chain_id, job_chain_id, label_hash
    from dataspace.chain.models import Deployment

    list(deploy.deploy_all())
    w3 = gateway.web3()
    operator = gateway.operator()
    provider, consumer = Account.from_key(PROVIDER_KEY), Account.from_key(CONSUMER_KEY)
    registry, usage, token = (gateway.contract(n) for n in ("DatasetRegistry", "UsageAgreements", "DevToken"))
    nonces: dict[str, int] = {}

    def send(account: object, call: object) -> None:
        sender = account.address  # type: ignore[attr-defined]
        nonce = nonces.setdefault(sender, w3.eth.get_transaction_count(sender))
        tx = call.build_transaction(  # type: ignore[attr-defined]
            {
                "from": sender,
                "nonce": nonce,
                "gas": 600_000,
                "chainId": gateway.chain_id(),
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)  # type: ignore[attr-defined]
        nonces[sender] = nonce + 1

    def mine() -> None:
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    dataset = dataset_chain_id(uuid.uuid4(), provider=provider.address)
    price = 10**15
    send(provider, registry.functions.register(dataset, b"\x01" * 32, b"\x02" * 32))
    send(provider, usage.functions.declareNonPersonal(dataset))
    send(
        provider,
        usage.functions.publishOffer(
            dataset, b"\x03" * 32, [label_hash("research")], [label_hash("mean")], USES, price, 86400 * 30, 0, 0, 0
        ),
    )
    send(operator, token.functions.mint(consumer.address, price * USES))
    send(consumer, token.functions.approve(usage.address, price * USES))
    mine()
    send(consumer, usage.functions.acceptOffer(usage.functions.offerCount().call(), USES))
    mine()
    agreement_id = int(usage.functions.agreementCount().call())
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    deadline = int(time.time()) + 86400
    for nonce in range(1, USES + 1):
        job = job_chain_id(agreement_id=agreement_id, nonce=nonce)
        signed = eip712.Usage(
            chain_id=gateway.chain_id(),
            contract=usage.address,
            agreement_id=agreement_id,
            job_id=job,
            purpose=label_hash("research"),
            operation=label_hash("mean"),
            params_hash=b"\x04" * 32,
            privacy_loss=0,
            nonce=nonce,
            deadline=deadline,
        )
        signature = eip712.sign_usage(key=bytes.fromhex(CONSUMER_KEY[2:]), usage=signed)
        send(
            operator,
            usage.functions.recordUsage(
                agreement_id, job, label_hash("research"), label_hash("mean"), b"\x04" * 32, 0, deadline, signature
            ),
        )
        send(operator, usage.functions.settle(job, b"\x05" * 32, b"\x06" * 32))
        if nonce % PER_BLOCK == 0:
            mine()
    mine()
    state = usage.functions.getAgreement(agreement_id).call()
    assert state[5] == USES, f"settled {state[5]} of {USES}"  # callsSettled
    contracts = {d.name: d.address for d in Deployment.objects.all()}
    return contracts, agreement_id


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def render(work: Path, rpc_url: str, contracts: dict[str, str], agreement_id: int) -> float:
    from playwright.sync_api import sync_playwright

    site = work / "site"
    shutil.copytree(ROOT / "frontend" / "dist", site / "static" / "app")
    space = {
        "chain_id": 31337,
        "rpc_url": rpc_url,
        "contracts": contracts,
        "token": contracts["DevToken"],
        "custodians": [],
    }
    boot = json.dumps({"csrf": "", "space": space})
    index = (site / "static" / "app" / "index.html").read_text()
    (site / "app").mkdir()
    (site / "app" / "index.html").write_text(
        index.replace("</head>", f'<script id="redlake-boot" type="application/json">{boot}</script></head>')
    )
    for path, body in {
        "api/me": {"username": "bench", "roles": ["auditor"], "wallet": None},
        "api/space": space,
    }.items():
        (site / path).mkdir(parents=True)
        (site / path / "index.html").write_text(json.dumps(body))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/app/#/explorer/agreement/{agreement_id}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            try:
                page = browser.new_page()
                page.goto(url.replace(f"agreement/{agreement_id}", ""))  # warm: scripts and the first chunk cached
                page.wait_for_selector("text=Chain explorer", timeout=60_000)
                start = time.perf_counter()
                page.goto(url)
                try:
                    page.wait_for_function(
                        f"document.querySelectorAll('[data-testid=timeline] > li').length === {2 * USES + 1}",
                        timeout=120_000,
                    )
                except Exception:
                    count = page.evaluate("document.querySelectorAll('[data-testid=timeline] > li').length")
                    print("timeline entries:", count, page.inner_text("[data-testid=agreement-state]"), file=sys.stderr)
                    raise
                return time.perf_counter() - start
            finally:
                browser.close()
    finally:
        server.shutdown()


def report(seconds: float) -> None:
    from bench.common import metric, write_result

    metrics = [
        metric(f"explorer agreement page, {USES} uses settled, rendered", seconds, "s", target=2.0, better="lower")
    ]
    print(
        write_result(
            "explorer", metrics, f"anvil; {2 * USES + 1} events read with eth_getLogs and drawn; headless Chromium"
        )
    )


if __name__ == "__main__":
    main()
