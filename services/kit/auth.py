"""Bearer-token authentication: HS256 JWTs naming a principal and its role.

Claims: ``sub`` (user id), ``role`` (one of :class:`Role`), ``firm_id`` (firms only), ``name``,
``iss``, ``aud``, ``iat``, ``exp``. A firm principal's qualified role is ``firm:<firm_id>``; that
form is also accepted in the ``role`` claim.

``iat`` and ``exp`` are required, and a token may not live longer than the verifier's maximum
lifetime (``INCENTIVES_JWT_MAX_LIFETIME``, 30 days by default): a leaked token with a 100-year
expiry is refused, not honoured until 2126.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from contracts.envelope import Actor, ActorKind, utcnow
from services.kit.errors import Forbidden, Unauthorized

ALGORITHM = "HS256"
ISSUER = "incentives"
AUDIENCE = "incentives-api"
#: Tolerated clock difference between the issuer and this service.
LEEWAY = timedelta(seconds=30)
#: The longest lifetime (``exp`` - ``iat``) a token may have, unless a setting says otherwise.
MAX_TOKEN_LIFETIME = timedelta(days=30)
#: The claims every token must carry.
REQUIRED_CLAIMS = ("sub", "role", "exp", "iat", "iss", "aud")


class Role(StrEnum):
    """What a principal may do."""

    FIRM = "firm"
    REVIEWER = "reviewer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Principal(BaseModel):
    """The authenticated caller."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sub: str = Field(
        min_length=1,
        max_length=200,
        description="Stable user id of the caller.",
        examples=["alice@acme.example"],
    )
    role: Role = Field(description="The caller's role.", examples=["firm", "reviewer"])
    firm_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The firm a firm user acts for; required for, and only for, role `firm`.",
        examples=["ACME"],
    )
    name: str | None = Field(
        default=None, max_length=200, description="Display name.", examples=["Alice Martin"]
    )

    @model_validator(mode="after")
    def _firm_id_matches_role(self) -> Self:
        if (self.role is Role.FIRM) != (self.firm_id is not None):
            raise ValueError("firm_id is required for role firm and forbidden otherwise")
        return self

    @property
    def qualified_role(self) -> str:
        """``firm:<firm_id>`` for firms, the bare role otherwise."""
        return f"firm:{self.firm_id}" if self.role is Role.FIRM else str(self.role)

    def to_actor(self) -> Actor:
        """The envelope actor for messages this principal causes."""
        return Actor(kind=ActorKind(self.role.value), id=self.sub, firm_id=self.firm_id)


class TokenService:
    """Issues and verifies tokens with one shared HS256 key."""

    def __init__(
        self,
        secret: SecretStr,
        *,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        ttl: timedelta = timedelta(hours=8),
        max_lifetime: timedelta = MAX_TOKEN_LIFETIME,
    ) -> None:
        if max_lifetime <= timedelta(0):
            raise ValueError("max_lifetime must be positive")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.ttl = min(ttl, max_lifetime)

    def issue(self, principal: Principal, *, ttl: timedelta | None = None) -> str:
        """A signed token for ``principal``, valid for ``ttl`` (default: the service's).

        A ``ttl`` longer than :attr:`max_lifetime` is a :class:`ValueError`: the token would be
        refused by every verifier with the same setting.
        """
        lifetime = ttl if ttl is not None else self.ttl
        if lifetime > self.max_lifetime:
            raise ValueError(
                f"a token may live at most {_duration(self.max_lifetime)}, "
                f"not {_duration(lifetime)}"
            )
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": principal.sub,
            "role": str(principal.role),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        }
        if principal.firm_id is not None:
            claims["firm_id"] = principal.firm_id
        if principal.name is not None:
            claims["name"] = principal.name
        return jwt.encode(claims, self._secret.get_secret_value(), algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`Unauthorized` otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._secret.get_secret_value(),
                algorithms=[ALGORITHM],  # pinned: never let the token choose (alg=none attacks)
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        # PyJWT has checked that both are numbers and that `iat` is not in the future, so
        # `exp` can be no later than now + leeway + the maximum lifetime.
        lifetime = timedelta(seconds=float(claims["exp"]) - float(claims["iat"]))
        if lifetime > self.max_lifetime:
            raise Unauthorized(
                f"invalid token: its lifetime ({_duration(lifetime)} from iat to exp) exceeds "
                f"the accepted maximum of {_duration(self.max_lifetime)}"
            )
        role = str(claims.get("role", ""))
        firm_id = claims.get("firm_id")
        if role.startswith("firm:"):
            role, _, qualified = role.partition(":")
            if firm_id is not None and firm_id != qualified:
                raise Unauthorized("invalid token: role and firm_id disagree")
            firm_id = qualified
        try:
            return Principal(sub=claims["sub"], role=role, firm_id=firm_id, name=claims.get("name"))
        except ValidationError as exc:
            # Name the claims and what is wrong with them, without the validator's internals
            # (error types, echoed input, documentation links).
            problems = "; ".join(_claim_problem(error) for error in exc.errors(include_url=False))
            raise Unauthorized(f"invalid token claims: {problems}") from None


def _claim_problem(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    claim = ".".join(str(part) for part in error["loc"])
    return f"{claim}: {message}" if claim else message


def _duration(value: timedelta) -> str:
    """``30 days``, ``8:00:00``: a lifetime as a person reads it."""
    if value.days and not value.seconds and not value.microseconds:
        return f"{value.days} day" + ("s" if value.days != 1 else "")
    return str(value)


def bearer_token(request: Request) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; :class:`Unauthorized` if absent."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authorization header must be `Bearer <token>`")
    return token.strip()


def install_token_service(app: Any, tokens: TokenService) -> None:
    """Make ``tokens`` the verifier used by :func:`current_principal` in ``app``."""
    app.state.token_service = tokens


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, or a 401 problem response."""
    tokens: TokenService | None = getattr(request.app.state, "token_service", None)
    if tokens is None:  # a wiring mistake, not the client's fault
        raise RuntimeError("no TokenService installed; call install_token_service(app, ...)")
    return tokens.verify(bearer_token(request))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(principal: Principal, allowed: Iterable[Role], action: str) -> None:
    """A 403 problem unless ``principal``'s role is one of ``allowed``."""
    roles = frozenset(allowed)
    if principal.role not in roles:
        raise Forbidden(
            f"role {principal.role} may not {action}; allowed: "
            + ", ".join(sorted(str(r) for r in roles))
        )


def require_roles(*roles: Role) -> Any:
    """FastAPI dependency factory: the caller, if their role is one of ``roles``; else 403."""

    def dependency(principal: CurrentPrincipal) -> Principal:
        require_role(principal, roles, "do this")
        return principal

    return Depends(dependency)
