"""``incentives`` with every service replaced by ``stub_service.py`` (for supervisor tests).

The real broker and Temporal dev server still start; only the service processes are stand-ins,
so these tests exercise the supervisor without depending on the services' own start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path

from services.cli import supervisor
from services.cli.main import app

STUB = Path(__file__).with_name("stub_service.py")


def _stub_argv(name: str) -> list[str]:
    return [sys.executable, str(STUB), name]


if __name__ == "__main__":
    supervisor.service_argv = _stub_argv
    app(prog_name="incentives")
