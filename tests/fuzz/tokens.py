"""Development tokens for every role, signed as ``incentives token`` signs them."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from services.kit.auth import Principal, Role, TokenService
from services.kit.settings import DEV_JWT_SECRET

TOKENS = TokenService(SecretStr(DEV_JWT_SECRET))

#: The principals the fuzzing uses, one per role: demo reviewers the desk seeds.
PRINCIPALS: dict[str, Principal] = {
    "firm": Principal(sub="alice@acme.example", role=Role.FIRM, firm_id="ACME"),
    "reviewer": Principal(sub="rev.novak@gaip.example", role=Role.REVIEWER),
    "supervisor": Principal(sub="sup.meyer@gaip.example", role=Role.SUPERVISOR),
    "auditor": Principal(sub="auditor@gaip.example", role=Role.AUDITOR),
    "admin": Principal(sub="admin@gaip.example", role=Role.ADMIN),
}


def bearer(principal: Principal) -> dict[str, str]:
    """The ``Authorization`` header of a fresh token for ``principal``."""
    return {"Authorization": f"Bearer {TOKENS.issue(principal)}"}


#: Role -> a maker of its headers (``none``: no token at all).
ROLE_TOKENS: dict[str, Callable[[], dict[str, str]]] = {
    "none": dict,
    **{role: (lambda p=principal: bearer(p)) for role, principal in PRINCIPALS.items()},
}
