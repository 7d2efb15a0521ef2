"""The API's content negotiation remembers decisions per Accept header and decides as DRF does."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from dataspace.accounts.models import User
from dataspace.negotiation import RememberedContentNegotiation
from tests.support.users import client_for

ACCEPTS = [None, "*/*", "application/json", "application/json; indent=4", "text/html", "text/*, */*;q=0.1", ""]


@pytest.mark.parametrize("renderers", [[JSONRenderer], [JSONRenderer, BrowsableAPIRenderer]])
def test_decisions_are_drfs_every_time(renderers: list[type]) -> None:
    def decide(negotiation: DefaultContentNegotiation, accept: str | None) -> tuple[type, str] | str:
        headers = {} if accept is None else {"HTTP_ACCEPT": accept}
        request = Request(APIRequestFactory().get("/api/datasets/", **headers))
        try:
            renderer, media_type = negotiation.select_renderer(request, [r() for r in renderers])
        except NotAcceptable:
            return "406"
        return type(renderer), media_type

    for _ in range(2):  # the second round answers from memory
        for accept in ACCEPTS:
            assert decide(RememberedContentNegotiation(), accept) == decide(DefaultContentNegotiation(), accept), accept


@pytest.mark.django_db
def test_the_catalogue_refuses_what_it_cannot_render_every_time(consumer: User) -> None:
    client = client_for(consumer)
    for _ in range(2):
        assert client.get("/api/datasets/", HTTP_ACCEPT="text/html").status_code == 406
        response = client.get("/api/datasets/", HTTP_ACCEPT="application/json")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
