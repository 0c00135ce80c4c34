"""``python -m stripe_double`` serves the double with the webhooks given on the command line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_line_entry_point() -> None:
    port = _free_port()
    hook = "http://127.0.0.1:9/hook?a=b"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stripe_double",
            "--port",
            str(port),
            "--webhook",
            f"{hook}=whsec_cli_secret",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        with httpx.Client(trust_env=False, timeout=2) as http:
            while True:
                try:
                    health = http.get(url + "/health")
                    break
                except httpx.HTTPError:
                    assert process.poll() is None
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            assert health.json()["ok"] is True
            endpoints = http.get(url + "/_test/state").json()["webhooks"]["endpoints"]
        assert [e["url"] for e in endpoints] == [hook]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert f"Stripe test double on http://127.0.0.1:{port}" in output.decode()
