"""Conflict of interest: the one rule the review desk and the approval workflow both apply.

A reviewer has a conflict of interest with an application when an organisation they declared
(an affiliation or an ownership interest, by name or by identifier) is the applicant firm or
one of its parent companies. Two organisations are the same when any of these match:

- the **normalised name** (:func:`normalise_organisation`): Unicode compatibility forms
  (NFKC: full-width letters are plain letters), case, punctuation, symbols and spacing are
  folded, so ``"Acme Vision-AI GmbH."`` is ``"acme  vision ai gmbh"``. Matching is exact on
  that form: ``"Acme"`` is not ``"Acme Vision AI GmbH"`` (a prefix would flag unrelated firms),
  and legal forms are kept (``"Acme SE"`` and ``"Acme GmbH"`` stay different companies);
- the **company-register entry**: the same register country and the same number with case,
  spacing and punctuation folded (``"HRB 123456"`` is ``"hrb-123456"``);
- the **LEI** (ISO 17442), exactly.

Pure functions on contract models, no I/O: the desk filters candidates with it and the
workflow's assignment and ``decide`` validator decide with it. Nothing else may compare
organisations.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.v1.applications import ApplicationContent
from contracts.v1.desk import ReviewerProfile

#: Unicode general categories kept in a comparable name: letters, marks and numbers. Everything
#: else (punctuation, symbols, separators, controls) is folded away.
_KEPT_CATEGORIES = frozenset("LMN")


def _fold(text: str) -> str:
    # NFKC before and after case folding: folding can leave a string that is no longer normal.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in _KEPT_CATEGORIES)


def normalise_organisation(name: str) -> str:
    """The comparable form of an organisation name (see the module docstring).

    ``"Acme Vision-AI GmbH."``, ``"ACME  VISION AI GMBH"`` and its full-width spelling
    all give ``"acmevisionaigmbh"``. A name made only of punctuation gives ``""``, which matches
    nothing.
    """
    return _fold(name)


def normalise_register_number(number: str) -> str:
    """The comparable form of a company-register number: ``"HRB 123 456"`` is ``"hrb123456"``."""
    return _fold(number)


@dataclass(frozen=True)
class Organisation:
    """One organisation a reviewer may be conflicted with: the firm or a parent company."""

    name: str
    register_country: str | None = None
    register_number: str | None = None
    lei: str | None = None

    def keys(self) -> frozenset[str]:
        """Everything that identifies the organisation, in comparable form."""
        return _keys(self.name, self.register_country, self.register_number, self.lei)


def _keys(
    name: str | None, register_country: str | None, register_number: str | None, lei: str | None
) -> frozenset[str]:
    keys: set[str] = set()
    if name is not None and (normalised := normalise_organisation(name)):
        keys.add(f"name:{normalised}")
    if register_country is not None and register_number is not None:
        number = normalise_register_number(register_number)
        if number:
            keys.add(f"register:{register_country.upper()}:{number}")
    if lei is not None and lei.strip():
        keys.add(f"lei:{lei.strip().upper()}")
    return frozenset(keys)


def firm_organisations(content: ApplicationContent) -> tuple[Organisation, ...]:
    """The firm and its parent companies, as the application identifies them."""
    firm = content.firm
    organisations = [
        Organisation(
            name=firm.legal_name,
            register_country=firm.country_of_incorporation,
            register_number=firm.registration_number,
            lei=firm.lei,
        ),
        *(
            Organisation(
                name=parent.legal_name,
                register_country=parent.country,
                register_number=parent.registration_number,
                lei=parent.lei,
            )
            for parent in firm.parent_companies
        ),
    ]
    return tuple(dict.fromkeys(organisations))  # de-duplicated, order kept


def named(names: Iterable[str]) -> tuple[Organisation, ...]:
    """Organisations known by name only (the desk's candidates filter takes names)."""
    return tuple(dict.fromkeys(Organisation(name=n) for n in names))


def declared_keys(profile: ReviewerProfile) -> frozenset[str]:
    """Everything the reviewer declared an interest in, in comparable form."""
    keys: set[str] = set()
    for name in (*profile.affiliations, *profile.ownership_interests):
        keys |= _keys(name, None, None, None)
    for identifier in profile.declared_identifiers:
        keys |= _keys(None, identifier.register_country, identifier.register_number, identifier.lei)
    return frozenset(keys)


def conflicts(profile: ReviewerProfile, organisations: Iterable[Organisation]) -> list[str]:
    """The names of the ``organisations`` the reviewer declared an interest in (by any key)."""
    declared = declared_keys(profile)
    hits = [o.name for o in organisations if o.keys() & declared]
    return list(dict.fromkeys(hits))
