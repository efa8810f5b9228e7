"""Money and exact decimals.

Amounts are :class:`~decimal.Decimal` end to end and travel in JSON as *strings*
(``"250000.00"``), never as JSON numbers: a JSON number is parsed as a binary float, which cannot
hold most decimal fractions exactly. For the same reason a Python ``float`` is refused on input;
pass a ``Decimal``, an ``int`` or a string.

:class:`Money` is a positive amount, at most as precise as its currency's ISO 4217 minor unit
(``JPY`` has none, ``EUR`` two, ``KWD`` three), in a currency money may be in
(:data:`contracts.iso.ACCEPTED_CURRENCIES`). :class:`Balance` is the same but may be zero, for
what is left of a budget. The JSON Schemas publish the wire format (a decimal string and a
three-letter code); the value rules are enforced by the models, as the currency list already
was, so a v1 consumer validating with the published schema still accepts every message a
producer can now emit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticKnownError

from contracts.iso import CurrencyCode, minor_units

#: No ISO 4217 currency has more than four minor-unit digits (CLF, UYW).
MONEY_DECIMAL_PLACES = 4
#: 18 integer digits: far beyond any program budget, and within NUMERIC(22, 4) in PostgreSQL.
MONEY_MAX_DIGITS = 22


def _refuse_float(value: Any) -> Any:
    # bool is an int subclass; True is not an amount.
    if isinstance(value, float | bool):
        raise ValueError(
            "decimal values must be given as a string, an integer or a Decimal, never a float "
            "(floats cannot represent most decimal fractions exactly)"
        )
    return value


def _canonical(value: Decimal) -> Decimal:
    # "-0" passes ge=0 but would serialise with a sign the schema pattern does not allow.
    return value.copy_abs() if value.is_zero() else value


def _plain_string(value: Decimal) -> str:
    # Fixed-point notation: str(Decimal("1E+3")) would be "1E+3".
    return format(value, "f")


def _count(digits: int, exponent: int) -> tuple[int, int]:
    # (decimal places, digits) of a decimal of `digits` significant digits and this exponent.
    if exponent >= 0:
        return 0, digits + exponent
    return -exponent, max(digits, -exponent)


def decimal_digits(max_digits: int, decimal_places: int) -> AfterValidator:
    """pydantic's ``max_digits`` and ``decimal_places`` constraints as one validator.

    The same outcome and the same errors (``decimal_max_digits``, ``decimal_max_places``,
    ``decimal_whole_digits``, in that order), read from one ``as_tuple()``: pydantic checks
    them in Python, reading each decimal's digits twice, which cost about a quarter of
    decoding an application. A limit holds when the value as written, or without its
    trailing zeros, keeps it. Place it right after the ``Field`` holding the other
    constraints (it expects a finite decimal).
    """
    whole = max(max_digits - decimal_places, 0)

    def check(value: Decimal) -> Decimal:
        _sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)  # finite: inf and nan are refused before
        count = len(digits)
        zeros = count - len(bytes(digits).rstrip(b"\0"))
        places, total = _count(count, exponent)
        if zeros == count:  # zero: without its trailing zeros it is 0E0
            short_places, short_total = 0, 1
        else:
            short_places, short_total = _count(count - zeros, exponent + zeros)
        if total > max_digits and short_total > max_digits:
            raise PydanticKnownError("decimal_max_digits", {"max_digits": max_digits})
        if places > decimal_places and short_places > decimal_places:
            raise PydanticKnownError("decimal_max_places", {"decimal_places": decimal_places})
        if total - places > whole and short_total - short_places > whole:
            raise PydanticKnownError("decimal_whole_digits", {"whole_digits": whole})
        return value

    return AfterValidator(check)


#: Building blocks shared by every exact-decimal type in the contracts (see ``Percentage``).
REFUSE_FLOAT = BeforeValidator(_refuse_float)
CANONICAL_ZERO = AfterValidator(_canonical)
AS_JSON_STRING = PlainSerializer(_plain_string, return_type=str, when_used="json")

MONEY_DIGITS = decimal_digits(MONEY_MAX_DIGITS, MONEY_DECIMAL_PLACES)

_AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,4})?$"

#: A non-negative decimal amount with at most four decimal places, serialised as a JSON string.
#: The JSON Schema publishes the wire format (a string pattern); the model enforces the same
#: limits with pydantic's checks.
NonNegativeDecimal = Annotated[
    Decimal,
    REFUSE_FLOAT,
    Field(ge=0, allow_inf_nan=False),
    MONEY_DIGITS,
    CANONICAL_ZERO,
    AS_JSON_STRING,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _AMOUNT_PATTERN,
            "description": "A non-negative decimal number written as a string, at most 4 decimals.",
        }
    ),
]

#: A decimal amount greater than zero (``0`` and ``-0`` are refused), otherwise as
#: :data:`NonNegativeDecimal`. The published wire format is the same string pattern.
PositiveDecimal = Annotated[
    Decimal,
    REFUSE_FLOAT,
    Field(gt=0, allow_inf_nan=False),
    MONEY_DIGITS,
    AS_JSON_STRING,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _AMOUNT_PATTERN,
            "description": (
                "A decimal number greater than zero written as a string, at most 4 decimals."
            ),
        }
    ),
]


def _precision_errors(amount: Decimal, currency: str) -> list[InitErrorDetails]:
    digits = minor_units(currency)
    if digits is None or amount == amount.quantize(Decimal(1).scaleb(-digits)):
        return []
    error = PydanticCustomError(
        "money_precision",
        "{currency} has {digits} decimal place(s); {amount} is more precise than its minor unit",
        {"currency": currency, "digits": digits, "amount": _plain_string(amount)},
    )
    return [InitErrorDetails(type=error, loc=("amount",), input=_plain_string(amount))]


class Balance(BaseModel):
    """A non-negative amount of money in one currency: what is left of a budget, say."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"amount": "120000.00", "currency": "EUR"}]},
    )

    amount: NonNegativeDecimal = Field(
        description=(
            "The amount, as a decimal string (never a JSON number), zero or more, at most as "
            "many decimals as the currency's minor unit."
        ),
        examples=["120000.00", "0"],
    )
    currency: CurrencyCode = Field(
        description=(
            "ISO 4217 alphabetic currency code, upper case; precious metals, fund codes and "
            "units of account are refused."
        ),
        examples=["EUR", "USD", "JPY", "AED"],
    )

    @model_validator(mode="after")
    def _within_minor_unit(self) -> Self:
        # Reported on `amount` itself, so an API error points at the field to fix.
        errors = _precision_errors(self.amount, self.currency)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Self:
        """Shorthand constructor: ``Money.of("100.00", "EUR")``."""
        return cls.model_validate({"amount": amount, "currency": currency})

    def __str__(self) -> str:
        return f"{_plain_string(self.amount)} {self.currency}"


class Money(Balance):
    """A positive amount of money in one ISO 4217 currency, no finer than its minor unit."""

    # Frozen and closed like Balance (pydantic merges a subclass's config into its parent's).
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount": "250000.00", "currency": "EUR"}]}
    )

    amount: PositiveDecimal = Field(
        description=(
            "The amount, as a decimal string (never a JSON number), greater than zero, at most "
            "as many decimals as the currency's minor unit (2 for EUR, 0 for JPY, 3 for KWD)."
        ),
        examples=["250000.00", "1200000", "99.95"],
    )
