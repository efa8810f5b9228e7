"""Where the checkpoint signing key comes from: settings, or (dev mode) a file under the var dir."""

from __future__ import annotations

import os
from pathlib import Path

from services.audit.domain.checkpoint import Signer
from services.audit.settings import Settings
from services.kit.logging import get_logger

log = get_logger(__name__)


def key_path(settings: Settings) -> Path:
    """The dev-mode key file, ``<var_dir>/audit/signing.key``."""
    return settings.var_dir / "audit" / "signing.key"


def load_signer(settings: Settings) -> Signer:
    """The configured key; in dev mode without one, the var dir's key (generated on first use)."""
    if settings.signing_key is not None:
        return Signer.from_text(settings.signing_key.get_secret_value())
    if not settings.dev_mode:  # the settings refuse this already; never sign with a made-up key
        raise RuntimeError("no checkpoint signing key configured outside dev mode")
    path = key_path(settings)
    if path.exists():
        return Signer.from_text(path.read_text())
    signer = Signer.generate(settings.origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with owner-only permissions, and never overwritten by a racing second start.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Signer.from_text(path.read_text())
    with os.fdopen(fd, "w") as handle:
        handle.write(signer.key_text() + "\n")
    log.info("generated a dev-mode checkpoint signing key", path=str(path))
    return signer
