"""NHS number validation: 10 digits, modulus 11 check digit (weights 10..2; 11 -> 0; 10 -> invalid)."""
from __future__ import annotations

from marshmallow import ValidationError, fields


def check_digit(first_nine: str) -> int | None:
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1)))
    digit = 11 - total % 11
    if digit == 11:
        return 0
    if digit == 10:
        return None
    return digit


def is_valid(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    return check_digit(value[:9]) == int(value[9])


def with_check_digit(first_nine: str) -> str | None:
    digit = check_digit(first_nine)
    return None if digit is None else first_nine + str(digit)


#: how an NHS number is described in OpenAPI documents (the check digit is beyond a pattern's reach)
OPENAPI = {"type": "string", "format": "nhs-number", "pattern": "^[0-9]{10}$", "example": "9434765919",
           "description": "An NHS number: 10 digits, the last a modulus 11 check digit."}


class NHSNumber(fields.String):
    """A marshmallow field that accepts only a valid NHS number."""

    def __init__(self, *args, **kwargs):
        described = {k: v for k, v in OPENAPI.items() if k != "type"}
        kwargs["metadata"] = {**described, **(kwargs.get("metadata") or {})}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not is_valid(value):
            raise ValidationError("Not a valid NHS number (10 digits with a modulus 11 check digit).")
        return value
