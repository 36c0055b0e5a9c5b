"""corral.compat.shape.traces: Shape's ProofTrace record and how corral's checks read in it."""

from __future__ import annotations

from datetime import datetime

import pytest

from corral.compat.shape import ProofTrace
from corral.compat.shape.traces import decision_of, shape_check


def record(**fields) -> ProofTrace:
    return ProofTrace(tool="read_plc", decision="ALLOWED", phase="explore", budget_spent=0.0, budget_limit=5.0,
                      rules_evaluated=[], **fields)


class TestProofTrace:
    def test_shapes_fields_and_defaults(self):
        trace = record()
        assert (trace.duration_s, trace.tx_id, trace.result, trace.error, trace.trace_id) == (0.0, None, None, None, None)
        assert datetime.fromisoformat(trace.timestamp).tzinfo is not None  # stamped when made, in UTC

    def test_fields_read_as_keys_too(self):
        trace = record(result=42)
        assert trace["tool"] == "read_plc" and trace.get("result") == 42 and trace.get("nope", "x") == "x"
        assert dict(trace)["decision"] == "ALLOWED"
        assert trace.to_dict() == dict(trace)
        with pytest.raises(KeyError):
            trace["nope"]


class TestChecks:
    def test_a_check_always_has_check_passed_and_detail(self):
        assert shape_check({"check": "tool"}) == {"check": "tool", "passed": True, "detail": ""}
        assert shape_check({"check": "phase", "passed": False, "detail": "x"})["passed"] is False

    @pytest.mark.parametrize(
        ("action", "matched", "passed"),
        [("block", True, False), ("approval", True, False), ("flag", True, True), ("allow", True, True),
         ("block", False, True)],
    )
    def test_a_rule_objects_only_when_a_block_or_approval_matched(self, action, matched, passed):
        check = shape_check({"check": "rule", "rule": "…", "action": action, "matched": matched})
        assert check["passed"] is passed


class TestDecisions:
    @pytest.mark.parametrize(
        ("corral", "shape"),
        [("allowed", "ALLOWED"), ("approved", "ALLOWED"), ("flagged", "FLAGGED"), ("blocked", "BLOCKED"),
         ("pending", "APPROVAL_REQUIRED"), ("denied", "APPROVAL_REQUIRED")],
    )
    def test_corrals_decisions_in_shapes_words(self, corral, shape):
        assert decision_of({"decision": corral}, None) == shape

    def test_a_refusal_wins_over_a_decision_written_before_it(self):
        # a store fault after an allowed decision was written: the call was still refused
        assert decision_of({"decision": "allowed"}, "BLOCKED") == "BLOCKED"
        assert decision_of(None, "APPROVAL_REQUIRED") == "APPROVAL_REQUIRED"
        assert decision_of(None, None) == "ALLOWED"
