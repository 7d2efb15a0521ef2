"""A minimal provider portal (server-rendered) until the React portal replaces it.

It calls the same services as the REST API, so it can enforce nothing the API does not.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from dataspace.accounts.models import User
from dataspace.catalog import selectors, services
from dataspace.catalog.uploads import SealedUpload, discard_unclaimed_uploads, install_sealing_handler
from dataspace.errors import DomainError


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    context = {
        "datasets": selectors.dataset_list(owner=user) if user.is_provider else selectors.dataset_list()[:50],
        "ingests": selectors.ingest_list(owner=user)[:20] if user.is_provider else [],
    }
    return render(request, "portal/home.html", context)


@csrf_exempt  # the sealing handler must be installed before CSRF reads the body; checked below
@login_required
def upload(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        install_sealing_handler(request)
    try:
        return _upload(request)
    finally:
        discard_unclaimed_uploads(request)


@csrf_protect
def _upload(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    if request.method != "POST":
        return redirect("portal:home")
    upload = request.FILES.get("file")
    if not user.is_provider:
        messages.error(request, "Only data providers can upload datasets.")
        return redirect("portal:home")
    if not isinstance(upload, SealedUpload):
        messages.error(request, "Choose a CSV or Parquet file.")
        return redirect("portal:home")
    title = request.POST.get("title", "").strip()[:200] or (upload.name or "dataset")
    metadata = services.DatasetMetadata(
        title=title,
        description=request.POST.get("description", "")[:10_000],
        keywords=[k.strip() for k in request.POST.get("keywords", "").split(",") if k.strip()][:32],
        licence=request.POST.get("licence", "")[:200],
    )
    try:
        ingest = services.ingest_start(provider=user, upload=upload, metadata=metadata)
    except DomainError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    else:
        messages.success(request, f"Upload received; ingest {ingest.id} is running.")
    return redirect("portal:home")
