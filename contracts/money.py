"""Money and exact decimals.

Amounts are :class:`~decimal.Decimal` end to end and travel in JSON as *strings*
(``"250000.00"``), never as JSON numbers: a JSON number is parsed as a binary float, which cannot
hold most decimal fractions exactly. For the same reason a Python ``float`` is refused on input;
pass a ``Decimal``, an ``int`` or a string.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from contracts.iso import CurrencyCode

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


#: Building blocks shared by every exact-decimal type in the contracts (see ``Percentage``).
REFUSE_FLOAT = BeforeValidator(_refuse_float)
CANONICAL_ZERO = AfterValidator(_canonical)
AS_JSON_STRING = PlainSerializer(_plain_string, return_type=str, when_used="json")

#: A non-negative decimal amount with at most four decimal places, serialised as a JSON string.
#: The JSON Schema publishes the wire format (a string pattern); the model enforces the same
#: limits with pydantic's checks.
NonNegativeDecimal = Annotated[
    Decimal,
    REFUSE_FLOAT,
    Field(
        ge=0,
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
        allow_inf_nan=False,
    ),
    CANONICAL_ZERO,
    AS_JSON_STRING,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,4})?$",
            "description": "A non-negative decimal number written as a string, at most 4 decimals.",
        }
    ),
]


class Money(BaseModel):
    """A non-negative amount of money in one ISO 4217 currency."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"amount": "250000.00", "currency": "EUR"}]},
    )

    amount: NonNegativeDecimal = Field(
        description=(
            "The amount, as a decimal string (never a JSON number), at most 4 decimal places."
        ),
        examples=["250000.00", "1200000", "99.95"],
    )
    currency: CurrencyCode = Field(
        description="ISO 4217 alphabetic currency code, upper case.",
        examples=["EUR", "USD", "JPY", "AED"],
    )

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        """Shorthand constructor: ``Money.of("100.00", "EUR")``."""
        return cls.model_validate({"amount": amount, "currency": currency})

    def __str__(self) -> str:
        return f"{_plain_string(self.amount)} {self.currency}"
