"""``redlake``: the consumer's command line. Every command takes ``--json`` for scripts; exit
codes are stable (``redlake_client.errors``: 0 ok, 2 refused by policy, 3 verification failed,
4 authentication, 5 not found, 6 unavailable or wrong chain, 7 job without result, 8 key, 9
invalid request, 64 usage)."""

from __future__ import annotations

import io
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from redlake_client import config, errors, signing
from redlake_client.client import Client
from redlake_client.models import Job

app = typer.Typer(help="Redlake consumer CLI: browse, agree, compute, verify.", no_args_is_help=True)
catalogue = typer.Typer(help="Browse the catalogue.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets.", no_args_is_help=True)
offer_app = typer.Typer(help="Offers.", no_args_is_help=True)
job_app = typer.Typer(help="Jobs.", no_args_is_help=True)
receipt_app = typer.Typer(help="Receipts.", no_args_is_help=True)
wallet_app = typer.Typer(help="Your own wallet.", no_args_is_help=True)
app.add_typer(catalogue, name="catalogue")
app.add_typer(dataset_app, name="dataset")
app.add_typer(offer_app, name="offer")
app.add_typer(job_app, name="job")
app.add_typer(receipt_app, name="receipt")
app.add_typer(wallet_app, name="wallet")

out = Console()
err = Console(stderr=True)
STATE: dict[str, Any] = {"json": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
KeyFile = Annotated[str | None, typer.Option("--key-file", help="Hex private key file (mode 0600).")]
Keystore = Annotated[
    str | None, typer.Option("--keystore", help="Keystore JSON (passphrase: $REDLAKE_KEYSTORE_PASSPHRASE).")
]


@app.callback()
def _main(
    json_output: JsonOpt = False,
    url: Annotated[str | None, typer.Option("--url", envvar="REDLAKE_URL", help="The platform's address.")] = None,
) -> None:
    STATE["json"] = json_output
    STATE["url"] = url


def _client() -> Client:
    return Client(STATE.get("url"))


def _json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _emit(value: Any, table: Table | None = None, json_flag: bool = False) -> None:
    if STATE["json"] or json_flag or table is None:
        _json(value)
    else:
        out.print(table)


def _signer(key_file: str | None, keystore: str | None) -> signing.Signer | None:
    return signing.load_signer(key_file=key_file, keystore=keystore)


@app.command()
def login(
    username: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    url: Annotated[str | None, typer.Option("--url", help="The platform's address.")] = None,
    rpc_url: Annotated[str | None, typer.Option(help="Your chain node (for signing and verify).")] = None,
    ttl_hours: Annotated[int | None, typer.Option(help="Token lifetime.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Log in and keep the token in your config directory (mode 0600)."""
    target = url or STATE.get("url") or config.setting("url", "REDLAKE_URL", "http://127.0.0.1:8000")
    client = Client.login(target, username, password, ttl_hours=ttl_hours)
    assert client.issued is not None
    path = config.update(url=target, token=client.issued.token, token_key=client.issued.token_key, rpc_url=rpc_url)
    body = {"username": username, "url": target, "config": str(path), "expiry": client.issued.expiry}
    if STATE["json"] or json_output:
        _json(body)
    else:
        out.print(f"Logged in as [bold]{username}[/] at {target}; token saved to {path}")


@app.command()
def whoami(json_output: JsonOpt = False) -> None:
    """Who the stored token belongs to, and their wallet."""
    me = _client().me()
    table = Table("user", "roles", "wallet")
    table.add_row(me.username, ", ".join(me.roles), f"{me.wallet.kind} {me.wallet.address}" if me.wallet else "-")
    _emit(me.model_dump(mode="json"), table, json_output)


@wallet_app.command("register")
def wallet_register(key_file: KeyFile = None, keystore: Keystore = None, json_output: JsonOpt = False) -> None:
    """Link your own address to your account: your key signs the platform's challenge locally."""
    signer = _signer(key_file, keystore)
    if signer is None:
        raise errors.KeyFileError("Name your key: --key-file, --keystore or $REDLAKE_PRIVATE_KEY.")
    wallet = _client().register_wallet(signer)
    _emit(wallet.model_dump(mode="json"), None if STATE["json"] or json_output else _row_table(wallet.model_dump()))


def _row_table(values: dict[str, Any]) -> Table:
    table = Table("field", "value")
    for k, v in values.items():
        table.add_row(str(k), json.dumps(v, default=str) if isinstance(v, dict | list) else str(v))
    return table


@catalogue.command("search")
def catalogue_search(
    query: Annotated[str | None, typer.Argument()] = None,
    keyword: Annotated[str | None, typer.Option()] = None,
    json_output: JsonOpt = False,
) -> None:
    """Datasets matching a text search or keyword."""
    found = list(_client().datasets(search=query, keyword=keyword))
    table = Table("id", "title", "provider", "personal", "keywords")
    for d in found:
        table.add_row(str(d.id), d.title, d.provider, "no" if d.non_personal else "yes", ", ".join(d.keywords))
    _emit([d.model_dump(mode="json") for d in found], table, json_output)


@dataset_app.command("show")
def dataset_show(dataset_id: str, json_output: JsonOpt = False) -> None:
    """A dataset's public metadata and its offers."""
    client = _client()
    dataset = client.dataset(dataset_id)
    offers = list(client.offers(dataset=dataset_id))
    body = {**dataset.model_dump(mode="json"), "offers": [o.model_dump(mode="json") for o in offers]}
    table = _row_table({k: v for k, v in dataset.model_dump(mode="json").items() if k != "profile"})
    for o in offers:
        table.add_row(f"offer {o.id}", f"{', '.join(o.operations)}; {o.max_calls} calls at {o.price_per_call}")
    _emit(body, table, json_output)


@offer_app.command("list")
def offer_list(dataset: Annotated[str | None, typer.Option()] = None, json_output: JsonOpt = False) -> None:
    offers = list(_client().offers(dataset=dataset))
    table = Table("id", "dataset", "operations", "purposes", "calls", "price", "status")
    for o in offers:
        table.add_row(
            str(o.id),
            str(o.dataset),
            ", ".join(o.operations),
            ", ".join(o.purposes),
            str(o.max_calls),
            str(o.price_per_call),
            o.status,
        )
    _emit([o.model_dump(mode="json") for o in offers], table, json_output)


@offer_app.command("accept")
def offer_accept(
    offer_id: str,
    calls: Annotated[int, typer.Option(help="Calls to buy.")],
    key_file: KeyFile = None,
    keystore: Keystore = None,
    json_output: JsonOpt = False,
) -> None:
    """Accept an offer: from your own wallet (approve + acceptOffer sent to the chain by you) when
    a key is given, else through your custodial wallet."""
    agreement = _client().accept_offer(offer_id, calls, signer=_signer(key_file, keystore))
    _emit(agreement.model_dump(mode="json"), _row_table(agreement.model_dump(mode="json")), json_output)


def _parse_params(params: str | None, param: list[str] | None) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(params) if params else {}
    for item in param or []:
        name, _, value = item.partition("=")
        try:
            parsed[name] = json.loads(value)
        except ValueError:
            parsed[name] = value
    return parsed


def _result_output(job: Job, fmt: str) -> None:
    if fmt == "json" or STATE["json"]:
        _json(job.model_dump(mode="json"))
        return
    frame = job.frame()
    if fmt == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer)
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(*(["", *map(str, frame.columns)]))
    for index, row in frame.iterrows():
        table.add_row(str(index), *(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)


@job_app.command("run")
def job_run(
    agreement: str,
    operation: str,
    params: Annotated[str | None, typer.Option(help="Parameters as JSON.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value (repeatable).")] = None,
    purpose: str = "research",
    epsilon: float = 0.0,
    key_file: KeyFile = None,
    keystore: Keystore = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse to resume a submission safely.")] = None,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    json_output: JsonOpt = False,
) -> None:
    """Ask for a computation, follow it through every state, print the result."""
    if json_output:
        STATE["json"] = True
    client = _client()
    signer = _signer(key_file, keystore)
    job = client.submit_job(
        agreement,
        operation,
        _parse_params(params, param),
        purpose=purpose,
        epsilon=epsilon,
        signer=signer,
        idempotency_key=idempotency_key,
    )
    err.print(f"job {job.id} submitted (resume with: redlake job wait {job.id})")
    with err.status(f"job {job.id}: {job.status}") as status:
        finished = client.wait_job(job.id, on_status=lambda j: status.update(f"job {j.id}: {j.status}"))
    err.print(f"job {finished.id}: {finished.status}")
    _result_output(finished, output)


@job_app.command("wait")
def job_wait(
    job_id: str,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    json_output: JsonOpt = False,
) -> None:
    """Resume following a job by its id (it is never submitted again)."""
    if json_output:
        STATE["json"] = True
    client = _client()
    with err.status(f"job {job_id}") as status:
        finished = client.wait_job(job_id, on_status=lambda j: status.update(f"job {j.id}: {j.status}"))
    _result_output(finished, output)


@job_app.command("list")
def job_list(json_output: JsonOpt = False) -> None:
    jobs = list(_client().jobs())
    table = Table("id", "operation", "status", "epsilon", "signed by")
    for j in jobs:
        table.add_row(str(j.id), j.operation, j.status, f"{j.epsilon:g}", "platform" if j.signed_by_platform else "you")
    _emit([j.model_dump(mode="json") for j in jobs], table, json_output)


@job_app.command("show")
def job_show(job_id: str, json_output: JsonOpt = False) -> None:
    job = _client().job(job_id)
    _emit(job.model_dump(mode="json"), _row_table(job.model_dump(mode="json")), json_output)


@receipt_app.command("show")
def receipt_show(job_id: str, json_output: JsonOpt = False) -> None:
    """The custodian's signed receipt of a job."""
    job = _client().job(job_id)
    if job.receipt is None:
        raise errors.JobFailed(f"The job is {job.status}: it has no receipt yet.", status=job.status, code=None)
    _emit(job.receipt, _row_table(job.receipt), json_output)


@app.command()
def verify(job_id: str, json_output: JsonOpt = False) -> None:
    """Check a job against the chain directly: usage, commitment, custodian, dataset hash."""
    from redlake_client.verify import verify as run_verify

    client = _client()

    report = run_verify(client, client.job(job_id), raise_on_failure=False)
    if STATE["json"] or json_output:
        _json(report.as_dict())
    else:
        table = Table("check", "ok", "detail")
        for c in report.checks:
            table.add_row(c.name, "[green]yes[/]" if c.ok else "[red]NO[/]", c.detail)
        out.print(table)
    if not report.ok:
        raise errors.VerificationFailed("verification failed", report)


@app.command()
def budget(agreement: Annotated[str | None, typer.Argument()] = None, json_output: JsonOpt = False) -> None:
    """Calls and privacy budget left, per agreement (all of yours by default)."""
    client = _client()
    ids = [agreement] if agreement else [str(a.id) for a in client.agreements() if a.status == "active"]
    budgets = [client.budget(i) for i in ids]
    table = Table("agreement", "calls left", "calls", "epsilon left", "epsilon share", "expires")
    for b in budgets:
        table.add_row(
            str(b.agreement),
            str(b.calls_left),
            str(b.calls),
            "exact answers" if b.non_personal else f"{b.epsilon_left:.4g}",
            f"{b.epsilon_share:g}",
            str(b.expires_at),
        )
    _emit([b.model_dump(mode="json") for b in budgets], table, json_output)


def main() -> None:
    """Entry point: maps every failure to its documented exit code and a one-line message."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else errors.EXIT_OK)
    except errors.RedlakeError as exc:
        if STATE["json"]:
            body: dict[str, Any] = {"error": {"type": type(exc).__name__, "message": exc.message}}
            if isinstance(exc, errors.ApiError):
                body["error"].update(code=exc.code, status=exc.status, details=exc.details)
            if isinstance(exc, errors.VerificationFailed) and exc.report is not None:
                body["error"]["report"] = exc.report.as_dict()
            sys.stderr.write(json.dumps(body, default=str) + "\n")
        else:
            err.print(f"[red]error[/]: {exc.message}")
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Typer's own command-line errors (it carries its own click): by shape, not by import.
        kind = type(exc).__name__
        if kind == "Exit":
            sys.exit(int(getattr(exc, "exit_code", 0)))
        if kind == "Abort":
            err.print("aborted")
            sys.exit(errors.EXIT_ERROR)
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(errors.EXIT_USAGE)
        raise


if __name__ == "__main__":
    main()
