"""What the SQL stores share: the row codec, records on their way into the chain, statements per dialect."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from corral.errors import ConfigError, StoreError
from corral.store.protocol import Append, LogStep, PutTransaction, Reserve, Settle, UpdateTransaction
from corral.store.sql import (
    ChainRecord,
    ReserveRow,
    StepRow,
    TxRow,
    decode_decimal,
    decode_doc,
    decode_list,
    dialect,
    prepare_op,
    to_decimal,
    to_micros,
    to_utc,
)


def test_a_row_that_does_not_decode_names_its_table_and_key() -> None:
    assert decode_doc("t", "k", '{"a": 1}') == {"a": 1}
    with pytest.raises(StoreError, match="table 't', key 'k': expected a JSON object"):
        decode_doc("t", "k", "[1]")
    with pytest.raises(StoreError, match="table 't', key 'k': its JSON does not parse"):
        decode_doc("t", "k", "{")
    assert decode_list("t", "k", '["a"]') == ["a"]
    with pytest.raises(StoreError, match="expected a JSON list"):
        decode_list("t", "k", "{}")
    assert decode_decimal("t", "k", "1.10") == Decimal("1.10")
    for bad in ("x", "NaN", "Infinity", None):
        with pytest.raises(StoreError, match="table 't', key 'k'"):
            decode_decimal("t", "k", bad)


def test_amounts_are_taken_at_their_written_value() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal(3) == Decimal(3)
    for bad in (True, None, [1]):
        with pytest.raises(ConfigError, match="an amount must be a Decimal or a number"):
            to_decimal(bad)


def test_times_are_utc_and_counted_in_microseconds() -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    assert to_utc(naive) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    paris = datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert to_utc(paris) == to_utc(naive)
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005


def test_a_chain_record_hashes_what_is_read_back() -> None:
    plain = ChainRecord.of("s1", {"id": "r1", "n": 1, "prev": "x", "hash": "y"})
    assert plain.text == '{"id":"r1","n":1}' and plain.record_id == "r1"
    keyed = ChainRecord.of("s1", {"by_number": {2: "b", 10: "a"}})  # int keys come back as strings
    assert keyed.text == '{"by_number":{"10":"a","2":"b"}}'
    digest = keyed.seal("prev-hash")
    keyed.apply()
    assert keyed.record["prev"] == "prev-hash" and keyed.record["hash"] == digest
    with pytest.raises(StoreError, match="needs a session id"):
        ChainRecord.of("", {})
    with pytest.raises(StoreError, match="cannot be stored as JSON"):
        ChainRecord.of("s1", {"text": "\ud800"})


def test_operations_are_made_ready_before_any_lock_is_taken() -> None:
    expires = datetime(2026, 1, 1, tzinfo=UTC)
    reserve = prepare_op(Reserve([("agent:a", 1)], 0.25, expires))
    assert isinstance(reserve, ReserveRow) and reserve.amount == Decimal("0.25")
    assert reserve.limits == [("agent:a", Decimal(1))] and reserve.keys == ["agent:a"]
    assert len(reserve.rid) == 26 and reserve.expires == to_micros(expires)
    assert isinstance(prepare_op(Append("s1", {"id": "r"})), ChainRecord)
    assert prepare_op(PutTransaction({"id": "t1", "state": "OPEN"})) == TxRow("t1", "OPEN", '{"id":"t1","state":"OPEN"}')
    assert prepare_op(LogStep("t1", {"b": 1, "a": 2})) == StepRow("t1", '{"a":2,"b":1}')
    assert prepare_op(Settle("r1", 1)) == Settle("r1", Decimal(1))
    update = UpdateTransaction("t1", {"state": "DONE"})
    assert prepare_op(update) is update
    with pytest.raises(ConfigError):
        prepare_op(Reserve([("agent:a", "lots")], 1, expires))


def test_a_statement_is_written_once_for_both_dialects() -> None:
    text = "SELECT doc FROM t WHERE id = ? AND k IN (?, ?){lock} ORDER BY {order}"
    sqlite = dialect("?", order="rowid", lock="")
    postgres = dialect("%s", order="ord", lock=" FOR UPDATE")
    assert sqlite(text) == "SELECT doc FROM t WHERE id = ? AND k IN (?, ?) ORDER BY rowid"
    assert postgres(text) == "SELECT doc FROM t WHERE id = %s AND k IN (%s, %s) FOR UPDATE ORDER BY ord"
    assert postgres(text) is postgres(text)  # translated once
