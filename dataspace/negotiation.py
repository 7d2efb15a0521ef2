"""Content negotiation that remembers its decision per Accept header.

DRF's negotiation parses the Accept header and matches it against every renderer on each request:
a noticeable share of a cached catalogue read's CPU (bench/read_cpu.py). Its decision depends on
nothing but the header, the view's renderers and a format suffix (``?format=`` chooses no renderer
here: URL_FORMAT_OVERRIDE is None), so each process makes it once per distinct combination. A
refusal (406) is decided anew every time. The memory is bounded: when full it starts again, so a
client sending ever new headers costs itself DRF's own negotiation, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

MAX_REMEMBERED = 256
_Key = tuple[str | None, tuple[type[BaseRenderer], ...], str | None]
_decisions: dict[_Key, tuple[int, str]] = {}


class RememberedContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        if self.settings.URL_FORMAT_OVERRIDE is not None:  # the decision would depend on the query too
            return super().select_renderer(request, renderers, format_suffix)  # type: ignore[no-any-return]
        key = (request.META.get("HTTP_ACCEPT"), tuple(type(r) for r in renderers), format_suffix)
        decided = _decisions.get(key)
        if decided is None:
            renderer, media_type = super().select_renderer(request, renderers, format_suffix)
            if len(_decisions) >= MAX_REMEMBERED:
                _decisions.clear()
            decided = _decisions[key] = (renderers.index(renderer), media_type)
        return renderers[decided[0]], decided[1]
