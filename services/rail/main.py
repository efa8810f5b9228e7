"""Entry point of the simulated rail (`incentives serve rail`)."""

from __future__ import annotations

from services.kit.runtime import run_service
from services.rail.app import create_app
from services.rail.settings import Settings

__all__ = ["create_app", "main"]


def main() -> None:
    """Run the rail until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
