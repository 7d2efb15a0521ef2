"""A man in the middle for SDK tests: forwards HTTP to the platform, and on request drops the
connection after the platform answered (a network drop mid-request) or rewrites a JSON answer
(a response tampered in transit)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

Rewrite = Callable[[str, str, Any], Any]


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.drop: list[tuple[str, str]] = []  # (method, exact path): forward, then hang up
        self.rewrite: Rewrite | None = None
        self.seen: list[tuple[str, str, int | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(
                    self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=60
                )
                for rule in list(proxy.drop):
                    if self.command == rule[0] and self.path.split("?")[0] == rule[1]:
                        proxy.drop.remove(rule)
                        proxy.seen.append((self.command, self.path, None))
                        self.close_connection = True
                        self.connection.close()  # the platform acted; the client never hears
                        return
                content = answer.content
                if proxy.rewrite is not None and answer.headers.get("Content-Type", "").startswith("application/json"):
                    content = json.dumps(proxy.rewrite(self.command, self.path, answer.json())).encode()
                proxy.seen.append((self.command, self.path, answer.status_code))
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
