"""The session cookie, encrypted as well as signed.

Starlette's :class:`~starlette.middleware.sessions.SessionMiddleware` only signs its cookie
(itsdangerous): anyone holding it can read the session, and the session holds the person's
bearer token. Here the same middleware seals the cookie with Fernet (``cryptography``:
AES-128-CBC with an HMAC-SHA256, and a timestamp checked against the session's lifetime), with
a key derived from the session secret by HKDF. A cookie that was altered, sealed with another
key or is older than the lifetime is ignored, as a bad signature is.

Browsers keep cookies of up to 4096 bytes. The session's JSON is sealed as it is (not as the
middleware's base64 of it), so the cookie is about 4/3 of the JSON; a larger one is logged, since
the browser would drop it and the person could not stay signed in.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp

from services.kit.logging import get_logger

log = get_logger(__name__)

#: Binds the derived key to this use of the secret.
_KEY_INFO = b"incentives portal session cookie v1"
#: The largest cookie value browsers are sure to keep (RFC 6265 section 6.1, less the name).
COOKIE_LIMIT = 4000


def session_key(secret: str) -> bytes:
    """The Fernet key derived from the configured session secret."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(derived)


class _Sealer:
    """Seals and opens cookie values in the form the session middleware signs them."""

    def __init__(self, secret: str) -> None:
        self._fernet = Fernet(session_key(secret))

    def sign(self, value: bytes) -> bytes:
        # The middleware hands over base64(JSON); sealing the JSON itself saves a third.
        sealed = self._fernet.encrypt(base64.b64decode(value))
        if len(sealed) > COOKIE_LIMIT:
            log.warning(
                "session cookie larger than browsers keep",
                size=len(sealed),
                limit=COOKIE_LIMIT,
            )
        return sealed

    def unsign(self, value: bytes, max_age: int | None = None) -> bytes:
        try:
            return base64.b64encode(self._fernet.decrypt(value, ttl=max_age))
        except InvalidToken as exc:
            raise BadSignature("the session cookie could not be opened") from exc


class EncryptedSessionMiddleware(SessionMiddleware):
    """Starlette's session middleware with a cookie nobody but the portal can read."""

    def __init__(
        self,
        app: ASGIApp,
        /,
        secret_key: str,
        *,
        session_cookie: str,
        max_age: int,
        same_site: Literal["lax", "strict", "none"],
        https_only: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app,
            secret_key=secret_key,
            session_cookie=session_cookie,
            max_age=max_age,
            same_site=same_site,
            https_only=https_only,
            **kwargs,
        )
        self.signer = _Sealer(secret_key)  # type: ignore[assignment]
