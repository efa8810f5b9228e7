"""``incentives token``: print a development bearer token for the platform's APIs.

The token is signed with the configured key (``INCENTIVES_JWT_SECRET``, or the development
default in dev mode), exactly as the services verify it, so::

    TOKEN=$(incentives token --role firm --firm ACME --user alice@acme.example)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8001/v1/applications

Only the token goes to standard output; errors go to standard error with exit code 2.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from services.kit.auth import Principal
    from services.kit.settings import CommonSettings

#: ``90s``, ``30m``, ``8h``, ``7d``, or plain seconds.
_TTL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_FIRM_ID = re.compile(r"^\S{1,100}$")


def parse_ttl(value: str | timedelta) -> timedelta:
    """``"8h"`` -> 8 hours; raises :class:`typer.BadParameter` on anything else."""
    if isinstance(value, timedelta):  # the default, already parsed
        return value
    match = _TTL.match(value)
    if match is None:
        raise typer.BadParameter("use a number with an optional unit s, m, h or d, e.g. 8h")
    ttl = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if ttl <= timedelta(0):
        raise typer.BadParameter("must be more than 0")
    return ttl


def token(
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="firm, reviewer, supervisor, auditor or admin (firm:<id> is accepted too).",
            show_default=False,
        ),
    ],
    firm: Annotated[
        str | None,
        typer.Option(
            "--firm", help="The firm id, for --role firm (e.g. ACME).", show_default=False
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            help="The person the token names (the `sub` claim). Default: a placeholder per role.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Display name.", show_default=False)
    ] = None,
    ttl: Annotated[
        timedelta | None,
        typer.Option(
            "--ttl",
            parser=parse_ttl,
            help=(
                "Lifetime: 90s, 30m, 8h, 7d; at most INCENTIVES_JWT_MAX_LIFETIME "
                "(30 days by default), the longest the services accept."
            ),
            show_default="8h, or the maximum if shorter",
        ),
    ] = None,
) -> None:
    """Print a signed development token for a firm user or a member of program staff."""
    from pydantic import ValidationError

    from services.kit.auth import Principal, Role
    from services.kit.settings import CommonSettings

    if role.startswith("firm:"):
        role, _, qualified = role.partition(":")
        if firm is not None and firm != qualified:
            _fail(f"--role firm:{qualified} and --firm {firm} disagree")
        firm = qualified
    try:
        parsed_role = Role(role)
    except ValueError:
        _fail(f"unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}")
    if parsed_role is Role.FIRM:
        if firm is None:
            _fail("--role firm needs --firm <id> (e.g. --firm ACME)")
        if not _FIRM_ID.fullmatch(firm):
            _fail("the firm id must be 1 to 100 characters without spaces")
    elif firm is not None:
        _fail(f"--firm applies to --role firm only, not {parsed_role}")
    subject = user or (
        f"dev@{firm.lower()}.example"
        if parsed_role is Role.FIRM and firm
        else f"dev.{parsed_role}@gaip.example"
    )
    try:
        settings = CommonSettings()
        principal = Principal(sub=subject, role=parsed_role, firm_id=firm, name=name)
    except ValidationError as exc:
        _fail("; ".join(str(error["msg"]) for error in exc.errors()))
    try:
        issued = issue(principal, ttl=ttl, settings=settings)
    except ValueError as exc:  # longer than the services would accept
        _fail(f"--ttl: {exc}")
    typer.echo(issued)


def issue(
    principal: Principal, *, ttl: timedelta | None = None, settings: CommonSettings | None = None
) -> str:
    """A bearer token for ``principal``, signed as the services verify it.

    ``ttl`` None is the services' default lifetime, within their cap; a longer one is a
    :class:`ValueError`. ``incentives token`` prints these, and the demo load uses them.
    """
    from services.kit.auth import TokenService
    from services.kit.settings import CommonSettings

    settings = settings or CommonSettings()
    service = TokenService(settings.jwt_secret, max_lifetime=settings.jwt_max_lifetime)
    return service.issue(principal, ttl=ttl)


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)
