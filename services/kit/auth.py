"""Bearer-token authentication: who the caller is, from a JWT, for every service.

Two kinds of token are verified here, and nowhere else:

- **Provider tokens**: access tokens of the OpenID provider (``INCENTIVES_OIDC_ISSUER``), signed
  with RS256 or ES256 and verified against the provider's JWKS (found through its discovery
  document, cached, and fetched again when a token names a key it does not hold, so the
  provider can rotate its keys). The issuer and the audience (``INCENTIVES_OIDC_AUDIENCE``)
  must match.
- **Development tokens**: HS256, signed with the shared ``INCENTIVES_JWT_SECRET`` (the dev-mode
  sign-in and ``incentives token`` mint them). Outside dev mode they are refused, except for
  the platform's own processes (a ``sub`` starting with ``system:``, such as the workflow
  worker calling the desk), which hold the shared secret.

How a token's claims become a :class:`Principal` is defined once, by :class:`ClaimMapping` and
:func:`principal_from_claims`: the subject, the role (a string, or a list holding exactly one
of the platform's roles; ``firm:<firm_id>`` also names the firm), the firm id and the display
name, each read from a configurable claim (a dotted path reaches into nested claims).

``iat`` and ``exp`` are required, and a token may not live longer than the verifier's maximum
lifetime (``INCENTIVES_JWT_MAX_LIFETIME``, 30 days by default): a leaked token with a 100-year
expiry is refused, not honoured until 2126.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol, Self

import httpx
import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from contracts.envelope import Actor, ActorKind, utcnow
from services.kit.errors import DependencyUnavailable, Forbidden, Unauthorized

ALGORITHM = "HS256"
ISSUER = "incentives"
AUDIENCE = "incentives-api"
#: Tolerated clock difference between the issuer and this service.
LEEWAY = timedelta(seconds=30)
#: The longest lifetime (``exp`` - ``iat``) a token may have, unless a setting says otherwise.
MAX_TOKEN_LIFETIME = timedelta(days=30)
#: The claims every token must carry.
REQUIRED_CLAIMS = ("sub", "role", "exp", "iat", "iss", "aud")
#: The claims every provider token must carry (the role may be nested; the mapping finds it).
PROVIDER_REQUIRED_CLAIMS = ("sub", "exp", "iat", "iss", "aud")
#: Signature algorithms accepted from the OpenID provider: asymmetric only, so that no
#: service holding the shared secret can mint a token that passes for the provider's.
PROVIDER_ALGORITHMS = ("RS256", "ES256")
#: Subjects of the platform's own processes; the only ones whose HS256 tokens are accepted
#: outside dev mode.
SYSTEM_SUBJECT_PREFIX = "system:"
#: How long the provider's key set is kept before it is fetched again.
JWKS_CACHE_LIFESPAN = timedelta(minutes=5)
#: The least time between two fetches of the key set caused by unknown key ids.
JWKS_REFRESH_COOLDOWN = timedelta(seconds=30)
#: How long a fetch of the provider's discovery document or key set may take.
PROVIDER_TIMEOUT = timedelta(seconds=5)


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


class ClaimMapping(BaseModel):
    """Which claims of a token name the principal: one definition for every service.

    Each field is a claim name; a dotted path (``realm_access.roles``) reaches into a nested
    object when no claim has the whole name (URL-named claims keep their dots).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str = Field(
        default="sub",
        min_length=1,
        description="The claim holding the stable user id (the reviewer registry's id).",
        examples=["sub", "email", "preferred_username"],
    )
    role: str = Field(
        default="role",
        min_length=1,
        description=(
            "The claim holding the role: one of `firm`, `reviewer`, `supervisor`, `auditor`, "
            "`admin` (or `firm:<firm_id>`), or a list in which exactly one of them appears."
        ),
        examples=["role", "roles", "realm_access.roles"],
    )
    firm: str = Field(
        default="firm_id",
        min_length=1,
        description="The claim holding a firm user's firm id.",
        examples=["firm_id"],
    )
    name: str = Field(
        default="name", min_length=1, description="The display name's claim.", examples=["name"]
    )


#: How the HS256 development tokens name their principal (and the provider's, by default).
DEFAULT_CLAIMS = ClaimMapping()


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """The claim named ``path``, or the nested value its dotted path reaches; None if absent."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _role_of(value: Any) -> str:
    """The one role named by a role claim (a string, or a list naming exactly one)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        known = {str(r) for r in Role}
        ours = sorted({str(v) for v in value if str(v).partition(":")[0] in known})
        if len(ours) == 1:
            return ours[0]
        if not ours:
            raise Unauthorized(
                "invalid token claims: role: none of the listed roles is one of the "
                "platform's (" + ", ".join(str(r) for r in Role) + ")"
            )
        raise Unauthorized(
            "invalid token claims: role: several of the platform's roles are listed ("
            + ", ".join(ours)
            + "); a person acts in one"
        )
    raise Unauthorized("invalid token claims: role: must be a string or a list of strings")


def principal_from_claims(
    claims: Mapping[str, Any], mapping: ClaimMapping = DEFAULT_CLAIMS
) -> Principal:
    """The principal a verified token's claims name, by ``mapping``; :class:`Unauthorized`.

    The role claim is ``firm``, ``reviewer``, ``supervisor``, ``auditor`` or ``admin``, or
    ``firm:<firm_id>``, which also names the firm (it must then agree with the firm claim).
    """
    subject = _claim(claims, mapping.subject)
    if not isinstance(subject, str):
        raise Unauthorized(f"invalid token claims: {mapping.subject}: a string is required")
    role_claim = _claim(claims, mapping.role)
    if role_claim is None:
        raise Unauthorized(f"invalid token claims: {mapping.role}: field required")
    role = _role_of(role_claim)
    firm_id = _claim(claims, mapping.firm)
    if role.startswith("firm:"):
        role, _, qualified = role.partition(":")
        if firm_id is not None and firm_id != qualified:
            raise Unauthorized("invalid token: role and firm_id disagree")
        firm_id = qualified
    try:
        return Principal(sub=subject, role=role, firm_id=firm_id, name=_claim(claims, mapping.name))
    except ValidationError as exc:
        # Name the claims and what is wrong with them, without the validator's internals
        # (error types, echoed input, documentation links).
        problems = "; ".join(_claim_problem(error) for error in exc.errors(include_url=False))
        raise Unauthorized(f"invalid token claims: {problems}") from None


def _decode(
    token: str,
    key: Any,
    *,
    algorithm: str,
    audience: str,
    issuer: str,
    required: Iterable[str],
    max_lifetime: timedelta,
) -> dict[str, Any]:
    """The claims of a token signed with ``key`` by ``algorithm`` (pinned: never the one the
    token asks for, against alg=none and key confusion), for ``audience`` from ``issuer``,
    carrying ``required`` and living no longer than ``max_lifetime``."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY,
            options={"require": list(required)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    # PyJWT has checked that both are numbers and that `iat` is not in the future, so
    # `exp` can be no later than now + leeway + the maximum lifetime.
    lifetime = timedelta(seconds=float(claims["exp"]) - float(claims["iat"]))
    if lifetime > max_lifetime:
        raise Unauthorized(
            f"invalid token: its lifetime ({_duration(lifetime)} from iat to exp) exceeds "
            f"the accepted maximum of {_duration(max_lifetime)}"
        )
    return claims


class ProviderTokens:
    """Verifies the OpenID provider's access tokens against its JWKS (RS256/ES256).

    The key set's address comes from the provider's discovery document
    (``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must be ``issuer``) unless
    ``jwks_url`` is given. PyJWT's :class:`jwt.PyJWKClient` caches the key set for
    ``cache_lifespan`` and fetches it again, at most once per ``refresh_cooldown``, when a
    token names an unknown key id: a rotated key is picked up, and made-up key ids cannot flood
    the provider.

    :meth:`verify` may fetch over the network (first use, expiry, rotation); async callers use
    :meth:`TokenService.averify`, which does that off the event loop.
    """

    def __init__(
        self,
        issuer: str,
        *,
        audience: str = AUDIENCE,
        jwks_url: str | None = None,
        claims: ClaimMapping = DEFAULT_CLAIMS,
        max_lifetime: timedelta = MAX_TOKEN_LIFETIME,
        cache_lifespan: timedelta = JWKS_CACHE_LIFESPAN,
        refresh_cooldown: timedelta = JWKS_REFRESH_COOLDOWN,
        timeout: timedelta = PROVIDER_TIMEOUT,
    ) -> None:
        if not issuer:
            raise ValueError("the provider's issuer is required")
        self.issuer = issuer
        self.audience = audience
        self.claims = claims
        self.max_lifetime = max_lifetime
        self._jwks_url = jwks_url or None
        self._cache_lifespan = cache_lifespan
        self._refresh_cooldown = refresh_cooldown
        self._timeout = timeout
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    @property
    def discovery_url(self) -> str:
        """The provider's OpenID Connect discovery document."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def _keys(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                self._client = jwt.PyJWKClient(
                    self._jwks_url or self._discover_jwks_url(),
                    cache_jwk_set=True,
                    lifespan=self._cache_lifespan.total_seconds(),
                    cooldown_duration=self._refresh_cooldown.total_seconds(),
                    timeout=self._timeout.total_seconds(),
                )
            return self._client

    def _discover_jwks_url(self) -> str:
        try:
            response = httpx.get(self.discovery_url, timeout=self._timeout.total_seconds())
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DependencyUnavailable(
                f"the identity provider's discovery document could not be read: {exc}"
            ) from exc
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the document must name its issuer.
            raise DependencyUnavailable(
                "the identity provider's discovery document names another issuer"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise DependencyUnavailable(
                "the identity provider's discovery document has no jwks_uri"
            )
        return jwks_uri

    def signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The provider's key ``kid``, fetching the key set when needed."""
        try:
            return self._keys().get_signing_key(kid)  # type: ignore[arg-type]
        except jwt.PyJWKClientConnectionError as exc:
            raise DependencyUnavailable(
                f"the identity provider's keys could not be fetched: {exc}"
            ) from exc
        except jwt.PyJWKClientError as exc:
            raise Unauthorized(
                "invalid token: signed with a key the provider does not publish"
            ) from exc

    def verify(self, token: str) -> Principal:
        """The principal of a valid provider token; :class:`Unauthorized` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in PROVIDER_ALGORITHMS:
            raise Unauthorized(f"invalid token: algorithm {algorithm!r} is not accepted")
        key = self.signing_key(header.get("kid"))
        if key.algorithm_name != algorithm:
            raise Unauthorized("invalid token: its algorithm does not match its key")
        claims = _decode(
            token,
            key,
            algorithm=algorithm,
            audience=self.audience,
            issuer=self.issuer,
            required=PROVIDER_REQUIRED_CLAIMS,
            max_lifetime=self.max_lifetime,
        )
        return principal_from_claims(claims, self.claims)


class TokenService:
    """Issues HS256 development tokens, and verifies them and the provider's tokens.

    ``provider`` verifies the OpenID provider's RS256/ES256 tokens (none accepted without it).
    ``dev_tokens=False`` (outside dev mode) refuses HS256 tokens except those of the platform's
    own processes (``sub`` starting with ``system:``).
    """

    def __init__(
        self,
        secret: SecretStr,
        *,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        ttl: timedelta = timedelta(hours=8),
        max_lifetime: timedelta = MAX_TOKEN_LIFETIME,
        provider: ProviderTokens | None = None,
        dev_tokens: bool = True,
    ) -> None:
        if max_lifetime <= timedelta(0):
            raise ValueError("max_lifetime must be positive")
        self._secret = secret
        self.provider = provider
        self.dev_tokens = dev_tokens
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
        """The principal of a valid token; :class:`Unauthorized` otherwise.

        The token's header says which kind it is; each kind is checked with its own fixed
        algorithms, never the one the token asks for (alg=none and key-confusion attacks).
        A provider token may need the provider's key set fetched: see :meth:`averify`.
        """
        if self._is_provider_token(token):
            assert self.provider is not None
            return self.provider.verify(token)
        return self._verify_development(token)

    async def averify(self, token: str) -> Principal:
        """:meth:`verify` for the event loop: a provider token is checked in a worker thread,
        since checking it may fetch the provider's keys."""
        if self._is_provider_token(token):
            assert self.provider is not None
            return await asyncio.to_thread(self.provider.verify, token)
        return self._verify_development(token)

    def _is_provider_token(self, token: str) -> bool:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        if algorithm == ALGORITHM:
            return False
        if algorithm in PROVIDER_ALGORITHMS and self.provider is not None:
            return True
        raise Unauthorized(f"invalid token: algorithm {algorithm!r} is not accepted")

    def _verify_development(self, token: str) -> Principal:
        claims = _decode(
            token,
            self._secret.get_secret_value(),
            algorithm=ALGORITHM,
            audience=self.audience,
            issuer=self.issuer,
            required=REQUIRED_CLAIMS,
            max_lifetime=self.max_lifetime,
        )
        principal = principal_from_claims(claims)
        if not self.dev_tokens and not principal.sub.startswith(SYSTEM_SUBJECT_PREFIX):
            raise Unauthorized(
                "invalid token: development tokens are accepted in dev mode only; sign in "
                "through the identity provider"
            )
        return principal


class TokenSettings(Protocol):
    """The settings :func:`token_service` reads (``services.kit.settings.CommonSettings``)."""

    dev_mode: bool
    jwt_secret: SecretStr
    jwt_max_lifetime: timedelta
    oidc_issuer: str
    oidc_audience: str
    oidc_jwks_url: str

    @property
    def oidc_claims(self) -> ClaimMapping: ...


def token_service(settings: TokenSettings) -> TokenService:
    """The verifier every service uses: the provider's tokens when an issuer is configured,
    development tokens in dev mode only (and the platform's own outside it)."""
    provider = (
        ProviderTokens(
            settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url or None,
            claims=settings.oidc_claims,
            max_lifetime=settings.jwt_max_lifetime,
        )
        if settings.oidc_issuer
        else None
    )
    return TokenService(
        settings.jwt_secret,
        max_lifetime=settings.jwt_max_lifetime,
        provider=provider,
        dev_tokens=settings.dev_mode,
    )


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
