"""The React portal's one page (``frontend/``, built by Vite into ``frontend/dist``).

Django serves only ``index.html`` here, at the site's root behind the portal's login, with the
CSRF token the app sends back on every write (the app talks to the REST API with the session
cookie). Its scripts and styles are static files under ``/static/app/``, served by whitenoise.
The app routes on the client (hash routes, ``/#/explorer``); ``/app/`` redirects here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.utils.html import json_script

from dataspace.chain.models import Deployment


@cache
def _index_html(path: Path, mtime: float) -> str:
    return path.read_text()


def _space_fallback() -> dict[str, Any]:
    """What the explorer starts from if ``GET /api/space/`` cannot answer (the node is away): the
    contracts from the deployment records, in the explorer's shape. Custodians are only ever
    read from the chain (CustodianRegistry), so none are named here."""
    contracts = {d.name: d.address for d in Deployment.objects.filter(chain_id=settings.CHAIN_ID).order_by("name")}
    return {
        "chain_id": settings.CHAIN_ID,
        "rpc_url": settings.CHAIN_PUBLIC_RPC_URL or settings.CHAIN_RPC_URL,
        "contracts": contracts,
        "token": contracts.get("DevToken"),
        "custodians": [],
    }


@login_required
def app(request: HttpRequest) -> HttpResponse:
    index = Path(settings.FRONTEND_DIST) / "index.html"
    if not index.exists():
        return HttpResponse(
            "The portal is not built: run `make install` (npm ci and npm run build in frontend/).",
            status=503,
            content_type="text/plain",
        )
    boot = {"csrf": get_token(request), "space": _space_fallback()}
    tag = json_script(boot, "redlake-boot")
    html = _index_html(index, index.stat().st_mtime).replace("</head>", f"{tag}</head>", 1)
    response = HttpResponse(html)
    response["Cache-Control"] = "no-store"  # it carries the CSRF token
    return response
