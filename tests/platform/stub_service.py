"""A stand-in service process for supervisor tests: serves /health on its configured port.

Run as ``python stub_service.py NAME``; it reads ``INCENTIVES_<NAME>_PORT`` like a real service.
``STUB_FAIL=NAME`` makes that service exit with code 3 during start-up, after a log line.
"""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


def main() -> None:
    """Serve /health until SIGTERM."""
    name = sys.argv[1]
    if os.environ.get("STUB_FAIL") == name:
        print(f"{name}: failing on purpose", flush=True)
        sys.exit(3)
    server = ThreadingHTTPServer(
        ("127.0.0.1", int(os.environ[f"INCENTIVES_{name.upper()}_PORT"])), _Handler
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{name} stub serving, broker={os.environ['INCENTIVES_KAFKA_BOOTSTRAP']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
