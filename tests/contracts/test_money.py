"""Money and exact decimals: refused floats, zero and negatives, currency precision and codes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contracts.iso import (
    ACCEPTED_CURRENCIES,
    COUNTRY_CODES,
    CURRENCY_CODES,
    CountryCode,
    minor_units,
)
from contracts.money import Balance, Money, NonNegativeDecimal, decimal_digits
from contracts.v1.common import Percentage
from tests.tiers import examples


class _Holder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: NonNegativeDecimal


def test_money_serialises_the_amount_as_a_json_string() -> None:
    money = Money.of("250000.00", "EUR")

    assert json.loads(money.model_dump_json()) == {"amount": "250000.00", "currency": "EUR"}


def test_money_keeps_the_amount_exact() -> None:
    money = Money.model_validate_json('{"amount": "0.1", "currency": "USD"}')

    assert money.amount == Decimal("0.1")
    assert money.amount + money.amount + money.amount == Decimal("0.3")


@pytest.mark.parametrize("amount", [1.5, 0.1, 100.0])
def test_float_amount_is_refused(amount: float) -> None:
    with pytest.raises(ValidationError, match="never a float"):
        Money(amount=amount, currency="EUR")


def test_json_number_with_a_fraction_is_refused() -> None:
    # A JSON number is a binary float once parsed; taking it would round silently.
    with pytest.raises(ValidationError, match="never a float"):
        Money.model_validate_json('{"amount": 1.00000000000000000001, "currency": "EUR"}')


def test_integers_are_exact_and_accepted() -> None:
    assert Money.model_validate_json('{"amount": 12, "currency": "JPY"}').amount == 12
    assert Money.of(12, "JPY").amount == Decimal(12)


@pytest.mark.parametrize("amount", ["-0.01", "-1", -5, "0", "-0", "0.00", "-0.00", 0])
def test_zero_and_negative_amounts_are_refused(amount: str | int) -> None:
    with pytest.raises(ValidationError, match="greater than 0") as caught:
        Money.of(amount, "EUR")
    assert [error["loc"] for error in caught.value.errors()] == [("amount",)]


def test_a_balance_may_be_zero_but_not_negative() -> None:
    assert Balance.of("0", "EUR").amount == 0
    assert json.loads(Balance.of("-0.00", "EUR").model_dump_json())["amount"] == "0.00"
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Balance.of("-0.01", "EUR")


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("0.001", "EUR"), ("99.955", "USD"), ("100.5", "JPY"), ("1.1", "KRW"), ("1.2345", "KWD")],
)
def test_an_amount_finer_than_the_currency_minor_unit_is_refused(
    amount: str, currency: str
) -> None:
    with pytest.raises(ValidationError, match="more precise than its minor unit") as caught:
        Money.of(amount, currency)
    assert [error["loc"] for error in caught.value.errors()] == [("amount",)]
    assert caught.value.errors()[0]["type"] == "money_precision"


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("0.01", "EUR"), ("1000", "JPY"), ("1000.00", "JPY"), ("1.234", "KWD"), ("0.1", "USD")],
)
def test_an_amount_within_the_currency_minor_unit_is_accepted(amount: str, currency: str) -> None:
    assert Money.of(amount, currency).amount == Decimal(amount)


def test_minor_units_come_from_iso_4217() -> None:
    assert (minor_units("EUR"), minor_units("JPY"), minor_units("KWD"), minor_units("CLF")) == (
        2,
        0,
        3,
        4,
    )
    assert minor_units("XAU") is None


@pytest.mark.parametrize("currency", ["XAU", "XAG", "XPT", "XPD", "XDR", "XBA", "CLF", "USN"])
def test_metals_units_of_account_and_fund_codes_are_refused(currency: str) -> None:
    with pytest.raises(ValidationError, match="not a currency money can be in") as caught:
        Money.of("1", currency)
    assert [error["loc"] for error in caught.value.errors()] == [("currency",)]


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "abc", "", True])
def test_non_numbers_are_refused(amount: object) -> None:
    with pytest.raises(ValidationError):
        Money.model_validate({"amount": amount, "currency": "EUR"})


def test_more_than_four_decimals_is_refused() -> None:
    with pytest.raises(ValidationError, match="decimal places"):
        Money.of("1.23456", "EUR")


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "ABC", "XXX", "XTS", ""])
def test_currency_must_be_an_iso_4217_code(currency: str) -> None:
    with pytest.raises(ValidationError):
        Money.of("1", currency)


def test_currency_list_holds_the_program_currencies() -> None:
    program = {"EUR", "USD", "JPY", "KRW", "CNY", "AED", "SAR", "GBP", "CHF", "KWD", "XOF"}
    assert program <= ACCEPTED_CURRENCIES <= CURRENCY_CODES
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_CODES)
    # Withdrawn within the last few years: recorded history keeps validating.
    assert {"HRK", "BGN", "SLL", "ZWL"} <= ACCEPTED_CURRENCIES


def test_country_list_is_iso_3166_alpha_2() -> None:
    # 249 assigned codes plus XK.
    assert len(COUNTRY_CODES) == 250
    assert {"DE", "FR", "AE", "SA", "JP", "KR", "CN", "SG", "US", "GB"} <= COUNTRY_CODES
    adapter: TypeAdapter[str] = TypeAdapter(CountryCode)
    assert adapter.validate_python("DE") == "DE"
    with pytest.raises(ValidationError):
        adapter.validate_python("ZZ")


def test_exponent_and_negative_zero_serialise_in_plain_notation() -> None:
    assert json.loads(Money.of(Decimal("1E+3"), "EUR").model_dump_json())["amount"] == "1000"


def test_money_is_immutable_and_refuses_unknown_fields() -> None:
    money = Money.of("1", "EUR")
    with pytest.raises(ValidationError):
        money.amount = Decimal(2)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        Money.model_validate({"amount": "1", "currency": "EUR", "note": "x"})


def test_non_negative_decimal_refuses_floats_in_any_model() -> None:
    with pytest.raises(ValidationError, match="never a float"):
        _Holder(value=0.5)
    assert _Holder(value="0.5").model_dump(mode="json") == {"value": "0.5"}


@pytest.mark.parametrize("value", ["0", "49.5", "100", "100.00"])
def test_percentage_accepts_zero_to_one_hundred(value: str) -> None:
    adapter: TypeAdapter[Decimal] = TypeAdapter(Percentage)
    assert adapter.validate_python(value) == Decimal(value)


@pytest.mark.parametrize("value", ["-1", "100.01", "12.345", 49.5])
def test_percentage_refuses_out_of_range_and_floats(value: object) -> None:
    adapter: TypeAdapter[Decimal] = TypeAdapter(Percentage)
    with pytest.raises(ValidationError):
        adapter.validate_python(value)


@st.composite
def _valid_money(draw: st.DrawFn) -> tuple[Decimal, str]:
    currency = draw(st.sampled_from(sorted(ACCEPTED_CURRENCIES)))
    places = minor_units(currency)
    assert places is not None
    amount = draw(
        st.decimals(
            min_value=Decimal(1).scaleb(-places),
            max_value=Decimal("999999999999999999"),
            places=places,
            allow_nan=False,
        )
    )
    return amount, currency


@given(valid=_valid_money())
def test_any_valid_amount_round_trips_exactly_through_json(valid: tuple[Decimal, str]) -> None:
    amount, currency = valid
    money = Money(amount=amount, currency=currency)

    again = Money.model_validate_json(money.model_dump_json())

    assert again.amount == amount
    assert again.currency == currency


@pytest.mark.parametrize(("max_digits", "places"), [(22, 4), (5, 2), (3, 0), (2, 4)])
@settings(max_examples=examples(400), deadline=None)
@given(
    value=st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=None),
        st.builds(
            lambda digits, exponent, sign: Decimal((sign, digits, exponent)),
            st.lists(st.integers(0, 9), min_size=1, max_size=26).map(tuple),
            st.integers(-12, 8),
            st.integers(0, 1),
        ),
    )
)
def test_decimal_digits_decides_as_pydantic_does(
    max_digits: int, places: int, value: Decimal
) -> None:
    """The one-pass check gives pydantic's own outcome and error for every finite decimal."""
    ours = TypeAdapter(
        Annotated[Decimal, Field(allow_inf_nan=False), decimal_digits(max_digits, places)]
    )
    theirs = TypeAdapter(
        Annotated[Decimal, Field(allow_inf_nan=False, max_digits=max_digits, decimal_places=places)]
    )

    def outcome(adapter: TypeAdapter[Decimal]) -> object:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            return [(e["type"], e["msg"], e.get("ctx")) for e in exc.errors()]

    assert outcome(ours) == outcome(theirs)
