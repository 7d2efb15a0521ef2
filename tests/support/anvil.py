"""A real anvil node for tests: started on a free port, stoppable and restartable with its state."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AnvilNode:
    def __init__(self, state_file: Path, port: int | None = None, chain_id: int = 31337):
        self.port = port or free_port()
        self.chain_id = chain_id  # ISSUE-12: another id plays a production chain run on anvil
        self.state_file = state_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AnvilNode:
        args = [
            str(ANVIL),
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--chain-id",
            str(self.chain_id),
            "--silent",
        ]
        args += ["--state", str(self.state_file)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("anvil did not start")

    def stop(self) -> None:
        """SIGTERM: anvil writes its state file on the way out, so a restart resumes the chain."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None
