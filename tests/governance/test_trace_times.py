"""How traces spell an instant: ``iso`` (UTC, milliseconds, ``Z``) and ``iso_exact`` (the time as the
clock gave it), whatever the clock's zone, for every instant a clock can give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from corral.governance.traces import iso, iso_exact

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)),
                         ZoneInfo("Europe/Berlin"), ZoneInfo("UTC"), ZoneInfo("America/New_York")])
INSTANTS = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)


@given(INSTANTS)
def test_iso_is_utc_to_the_millisecond_with_z(ts: datetime) -> None:
    expected = ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso(ts) == expected
    assert iso(ts) == expected  # the remembered text is the same text


@given(INSTANTS, INSTANTS)
def test_iso_exact_is_the_clocks_own_spelling_even_right_after_iso(first: datetime, second: datetime) -> None:
    iso(first)
    assert iso_exact(first) == first.isoformat()
    assert iso_exact(second) == second.isoformat()  # another object: never the remembered text
    same_instant_elsewhere = first.astimezone(timezone(timedelta(hours=3)))
    iso(first)
    assert iso_exact(same_instant_elsewhere) == same_instant_elsewhere.isoformat()


def test_whole_seconds_keep_three_digits() -> None:
    assert iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)) == "2026-01-02T03:04:05.999Z"
