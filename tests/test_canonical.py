from datetime import UTC, date, datetime
from decimal import Decimal

from corral.canonical import canonical_json, canonical_sha256, sha256_hex


class _Card:
    def to_dict(self):
        return {"last4": "4242"}


def test_equal_values_give_equal_text_whatever_the_key_order():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1}) == '{"a":[1,2],"b":1}'


def test_text_keeps_unicode_and_has_no_whitespace():
    assert canonical_json({"name": "Zoë"}) == '{"name":"Zoë"}'


def test_values_json_lacks_become_plain_json():
    value = {
        "amount": Decimal("1.5"),
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "day": date(2026, 1, 2),
        "tags": ("a", "b"),
        "card": _Card(),
    }
    assert canonical_json(value) == (
        '{"amount":1.5,"at":"2026-01-02T03:04:05+00:00","card":{"last4":"4242"},"day":"2026-01-02","tags":["a","b"]}'
    )


def test_hash_is_the_sha256_of_the_canonical_text():
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_hex(b"abc") == sha256_hex("abc")
    assert canonical_sha256({"b": 1, "a": 2}) == sha256_hex('{"a":2,"b":1}')


# -- the one-shot encoder says exactly what json.JSONEncoder with the same settings says ----------------

import json  # noqa: E402 - the property test below compares against the standard encoder

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=lambda v: list(v) if isinstance(v, tuple) else float(v))
_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text() | st.decimals(
    allow_nan=False, allow_infinity=False)
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner,
                                                                                              max_size=4), max_leaves=30)


@given(_VALUES)
def test_the_canonical_text_is_the_standard_encoders_text(value: object) -> None:
    assert canonical_json(value) == _REFERENCE.encode(value)


def test_a_value_that_contains_itself_is_refused() -> None:
    import pytest

    looped: list[object] = []
    looped.append(looped)
    with pytest.raises((RecursionError, ValueError)):
        canonical_json(looped)
