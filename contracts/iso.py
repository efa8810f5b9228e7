"""ISO codes the contracts validate: ISO 4217 currencies, ISO 3166-1 countries, ISO 17442 LEIs.

Currencies and their minor units come from the ``iso4217`` package (ISO 4217 list one, pinned in
``uv.lock``), so a new edition of the standard is a dependency upgrade, not an edit here. This
module is the one home of what the contracts make of that data: which codes exist, which of them
money may be denominated in, and how many decimals each allows. Countries are an embedded table.

The JSON Schemas only publish the code *format* (a pattern); the lists below are enforced by the
models, so adding a code here is not a schema change.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Final

import iso4217
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError
from stdnum import lei as _lei
from stdnum.exceptions import ValidationError as _NumberError


def _codes(text: str) -> frozenset[str]:
    # Whitespace-separated tables read (and diff) better than hundreds of quoted literals.
    return frozenset(text.split())


#: Codes withdrawn from ISO 4217 within the last few years, with their minor units. They stay
#: accepted so that recorded history keeps validating.
_WITHDRAWN_MINOR_UNITS: Final[Mapping[str, int]] = {
    "ANG": 2,  # Netherlands Antillean guilder, replaced by XCG in 2025
    "BGN": 2,  # Bulgarian lev, replaced by EUR in 2026
    "CUC": 2,  # Cuban convertible peso, withdrawn in 2021
    "HRK": 2,  # Croatian kuna, replaced by EUR in 2023
    "SLL": 2,  # Sierra Leonean leone, redenominated as SLE in 2022
    "ZWL": 2,  # Zimbabwe dollar, replaced by ZWG in 2024
}
#: ``XTS`` is reserved for testing and ``XXX`` means "no currency": neither is ever money.
_NEVER_MONEY: Final = frozenset({"XTS", "XXX"})

#: Minor-unit digits per ISO 4217 alphabetic code (``None`` where ISO says "N.A.": precious
#: metals, the SDR, bond-market units).
CURRENCY_MINOR_UNITS: Final[Mapping[str, int | None]] = MappingProxyType(
    {
        **{c.code: c.exponent for c in iso4217.Currency if c.code not in _NEVER_MONEY},
        **_WITHDRAWN_MINOR_UNITS,
    }
)

#: Every ISO 4217 alphabetic code the contracts know, including fund, metal and SDR units.
CURRENCY_CODES: Final[frozenset[str]] = frozenset(CURRENCY_MINOR_UNITS)


def _fund_codes() -> frozenset[str]:
    # The package's enum drops ISO's IsFund flag; its raw table keeps it.
    funds: set[str] = set()
    for entry in iso4217.raw_xml.iter("CcyNtry"):
        name = entry.find("CcyNm")
        if name is not None and name.get("IsFund") == "true":
            funds.add(entry.findtext("Ccy", "").strip())
    return frozenset(funds)


#: Codes that are not money a grant or an investment can be in: ISO's fund codes (e.g. ``CLF``,
#: ``USN``), and the units of account ISO does not flag as funds (``UYW``, ``XAD``).
UNITS_OF_ACCOUNT: Final[frozenset[str]] = _fund_codes() | {"UYW", "XAD"}

#: The currencies money may be denominated in: those with a minor unit that are not units of
#: account. This refuses ``XAU`` (gold) and the other metals, ``XDR``, the bond units and the
#: fund codes. Which of them a program converts is its rule set's business (its fixed rates).
ACCEPTED_CURRENCIES: Final[frozenset[str]] = frozenset(
    code
    for code, digits in CURRENCY_MINOR_UNITS.items()
    if digits is not None and code not in UNITS_OF_ACCOUNT
)


def minor_units(currency: str) -> int | None:
    """Decimal places of ``currency`` (2 for EUR, 0 for JPY, 3 for KWD); ``None`` if it has none."""
    return CURRENCY_MINOR_UNITS.get(currency)


#: ISO 3166-1 alpha-2 codes of the 249 officially assigned countries and territories, plus
#: ``XK`` (Kosovo), a user-assigned code that the EU, the IMF and most registries use.
COUNTRY_CODES: frozenset[str] = _codes(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW XK
    """
)


def currency_problem(code: str) -> tuple[str, str] | None:
    """Why money cannot be in ``code``, as ``(error type, message)``; ``None`` if it can."""
    if code not in CURRENCY_CODES:
        return "currency_unknown", f"'{code}' is not an ISO 4217 currency code"
    if code not in ACCEPTED_CURRENCIES:
        return (
            "currency_not_accepted",
            f"'{code}' is an ISO 4217 code but not a currency money can be in (precious metals, "
            "fund codes and units of account are refused)",
        )
    return None


def _accepted_currency(code: str) -> str:
    problem = currency_problem(code)
    if problem is not None:
        kind, message = problem
        # The message is already formatted: braces in it must not be read as placeholders.
        raise PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"))
    return code


def _known_country(code: str) -> str:
    if code not in COUNTRY_CODES:
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


#: An ISO 4217 alphabetic currency code, upper case, that money may be in (see
#: :data:`ACCEPTED_CURRENCIES`), e.g. ``EUR``.
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_accepted_currency)]

#: An ISO 3166-1 alpha-2 country code, upper case, e.g. ``DE``.
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$"), AfterValidator(_known_country)]


def _valid_lei(code: str) -> str:
    # python-stdnum checks the ISO 7064 MOD 97-10 check digits (the last two characters).
    try:
        _lei.validate(code)
    except _NumberError as exc:
        raise ValueError(f"{code!r} is not a valid ISO 17442 LEI: {exc}") from None
    return code


#: An ISO 17442 Legal Entity Identifier: 18 upper-case letters or digits and two check digits
#: (ISO 7064 MOD 97-10), e.g. ``391200ACMEVISIONAI97``.
Lei = Annotated[str, Field(pattern=r"^[A-Z0-9]{18}[0-9]{2}$"), AfterValidator(_valid_lei)]
