"""ISO codes the contracts validate: ISO 4217 currencies, ISO 3166-1 countries, ISO 17442 LEIs.

The lists are embedded rather than taken from a third-party package so that ``contracts`` stays a
small, dependency-light library whose validation does not shift under a dependency upgrade. The
JSON Schemas only publish the code *format* (a pattern); the lists below are enforced by the
models, so adding a code here is not a schema change.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from stdnum import lei as _lei
from stdnum.exceptions import ValidationError as _NumberError


def _codes(text: str) -> frozenset[str]:
    # Whitespace-separated tables read (and diff) better than hundreds of quoted literals.
    return frozenset(text.split())


#: Active ISO 4217 alphabetic codes (list one), including fund, metal and SDR units, but not
#: ``XTS`` (reserved for testing) or ``XXX`` (no currency), which can never denominate money.
#: Codes withdrawn within the last few years (HRK, SLL, ANG, CUC, ZWL) stay accepted so that
#: recorded history keeps validating.
CURRENCY_CODES: frozenset[str] = _codes(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR
    ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD
    MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR
    PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF
    XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL
    """
)

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


#: ISO 4217 minor units of the currencies that do not have two (list one). Fund, metal and SDR
#: units without minor units ("N.A.") count as whole units.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        _codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"), 0
    ),
    **dict.fromkeys(_codes("BHD IQD JOD KWD LYD OMR TND"), 3),
    **dict.fromkeys(_codes("CLF UYW"), 4),
    **dict.fromkeys(_codes("XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XUA"), 0),
}


def minor_units(code: str) -> int:
    """Decimal places of the currency's minor unit (2 for EUR, 0 for JPY, 3 for KWD)."""
    return _MINOR_UNITS.get(_known_currency(code), 2)


def _known_currency(code: str) -> str:
    if code not in CURRENCY_CODES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


def _known_country(code: str) -> str:
    if code not in COUNTRY_CODES:
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


#: An ISO 4217 alphabetic currency code, upper case, e.g. ``EUR``.
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_known_currency)]

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
