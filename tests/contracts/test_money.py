"""Money and exact decimals: refused floats, refused negatives, string serialisation."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from contracts.iso import COUNTRY_CODES, CURRENCY_CODES, CountryCode
from contracts.money import Money, NonNegativeDecimal
from contracts.v1.common import Percentage


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


@pytest.mark.parametrize("amount", ["-0.01", "-1", -5])
def test_negative_amount_is_refused(amount: str | int) -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Money.of(amount, "EUR")


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
    assert {"EUR", "USD", "JPY", "KRW", "CNY", "AED", "SAR", "GBP", "CHF"} <= CURRENCY_CODES
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_CODES)


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
    assert json.loads(Money.of("-0.00", "EUR").model_dump_json())["amount"] == "0.00"


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


@given(
    amount=st.decimals(
        min_value=0, max_value=Decimal("999999999999999999.9999"), places=4, allow_nan=False
    ),
    currency=st.sampled_from(sorted(CURRENCY_CODES)),
)
def test_any_valid_amount_round_trips_exactly_through_json(amount: Decimal, currency: str) -> None:
    money = Money(amount=amount, currency=currency)

    again = Money.model_validate_json(money.model_dump_json())

    assert again.amount == amount
    assert again.currency == currency
