"""Calls, rules and strategies shared by the Cedar export and import tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import cedarpy
from hypothesis import strategies as st

from corral.governance.rules import Policy
from corral.governance.rules.cedar import cedar_decision, cedar_entities, cedar_request


@dataclass
class Call:
    tool: str = "send_email"
    effect: str = "irreversible"
    phase: str = "commit"
    args: Mapping[str, Any] = field(default_factory=dict)
    principal: str = "alice"
    roles: tuple[str, ...] = ("agent",)
    agent: str = "desk"
    # what the rules may read but the translated part never does
    budget_pct: float = 0.0
    spent: Decimal = Decimal(0)
    remaining: Decimal | None = None
    cost: Decimal = Decimal(0)
    now: datetime = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    call_log: Sequence[tuple[str, datetime]] = ()
    labels: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    def cedar(self) -> dict[str, Any]:
        return cedar_request(
            self.tool, self.args, effect=self.effect, phase=self.phase, principal=self.principal, agent=self.agent
        )


TOOLS = ["send_email", "send_sms", "lookup", "pay"]


def _fits(value: Any, kind: str) -> bool:
    if kind == "decimal":
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if kind == "String":
        return isinstance(value, str)
    if kind == "Bool":
        return isinstance(value, bool)
    return isinstance(value, Mapping)


def conform(call: Call, export: Any) -> Call:
    """The call with only the arguments the export's schema declares, each of its type: a request that
    fits the schema (the claim is exactness for those)."""

    def keep(args: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out = {}
        for key, value in args.items():
            path = f"{prefix}{key}"
            kind = export.arguments.get(path)
            if kind is None or not _fits(value, kind):
                continue
            out[key] = keep(value, path + ".") if kind == "record" else value
        return out

    return replace(call, args=keep(call.args, ""))


def cedar_says(export: Any, calls: Sequence[Call], *, schema: bool = False) -> list[str]:
    policies = cedarpy.PolicySet.from_str(export.policies)
    answers = []
    for call in calls:  # each call with its own entities: the same principal may hold other roles in another
        entities = cedar_entities({call.principal: call.roles})
        result = cedarpy.is_authorized(call.cedar(), policies, entities, schema=export.schema if schema else None)
        assert not result.diagnostics.errors, result.diagnostics.errors
        answers.append(cedar_decision(result, export.kinds))
    return answers


def corral_says(policy: Policy, calls: Sequence[Call]) -> list[str]:
    return [policy.decide(call).decision for call in calls]  # type: ignore[arg-type]


# -- the differential property ----------------------------------------------------------------------------

ATOMS = [
    "phase IS commit",
    "phase IS NOT explore",
    "phase IN (explore, decide)",
    'phase MATCHES "C*"',
    "phase EXISTS",
    "effect IS read",
    "effect NOT IN (reversible, irreversible)",
    "tool IS send_email",
    "tool IN (send_email, lookup)",
    'tool MATCHES "*_*"',
    "principal IS alice",
    "principal IN (alice, bob)",
    "principal.role IS admin",
    "principal.role IN (admin, oncall)",
    "principal.role CONTAINS agent",
    "agent IS desk",
    "agent NOT IN (other)",
    "arg.amount ABOVE 100",
    "arg.amount AT MOST 5",
    "arg.amount BELOW 0.5",
    "arg.amount AT LEAST 20.25",
    "arg.amount IS 5",
    "arg.amount IN (5, 7.5)",
    "arg.amount EXISTS",
    "arg.amount NOT EXISTS",
    'arg.to MATCHES "*@*"',
    'arg.to IS "x@evil"',
    "arg.to IN (a, b)",
    "arg.to IS NOT 12",
    "arg.flag IS true",
    "arg.flag IS NOT false",
    "arg.customer.tier IS gold",
    "arg.customer.tier NOT IN (gold, silver)",
    "arg.customer EXISTS",
]
UNTRANSLATABLE = [
    "time OUTSIDE 09:00-17:00",
    "day IN (sat, sun)",
    "calls(send_*, 1h) AT LEAST 2",
    "budget ABOVE 50%",
    "spent ABOVE 1",
    "labels CONTAINS pii",
    "tags CONTAINS egress",
    'arg.to MATCHES "*EVIL*"',
    "arg.to CONTAINS x",
    "principal.role EXISTS",
    'principal MATCHES "a*"',
    'tool MATCHES "send_*"',
]
TARGETS = ["*", "send_email", "lookup", "send_*", "pay"]
ACTIONS = ["BLOCK", "ALLOW", "FLAG", "REQUIRE APPROVAL FOR"]


def conditions(atoms: list[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        st.sampled_from(atoms),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda pair: f"({pair[0]} AND {pair[1]})"),
            st.tuples(inner, inner).map(lambda pair: f"({pair[0]} OR {pair[1]})"),
            inner.map(lambda item: f"NOT ({item})"),
        ),
        max_leaves=4,
    )


@st.composite
def rule_lines(draw: st.DrawFn, atoms: list[str]) -> str:
    text = f"{draw(st.sampled_from(ACTIONS))} {draw(st.sampled_from(TARGETS))}"
    if draw(st.booleans()):
        text += f" WHEN {draw(conditions(atoms))}"
    if draw(st.integers(0, 3)) == 0:
        text += f" UNLESS {draw(conditions(atoms))}"
    return text


amounts = st.one_of(
    st.integers(-10, 300),
    st.decimals(-10, 300, places=2, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 5.0, 7.5, 20.25, 100.0, 99.99]),
)


@st.composite
def calls(draw: st.DrawFn) -> Call:
    args: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "amount": amounts,
                "to": st.sampled_from(["a", "b", "x@evil", "Y@EVIL", "q", "12", ""]),
                "flag": st.booleans(),
                "customer": st.fixed_dictionaries({}, optional={"tier": st.sampled_from(["gold", "silver", "tin"])}),
                "unread": st.integers(0, 3),
            },
        )
    )
    return Call(
        tool=draw(st.sampled_from(TOOLS)),
        effect=draw(st.sampled_from(["read", "reversible", "irreversible"])),
        phase=draw(st.sampled_from(["explore", "decide", "commit"])),
        args=args,
        principal=draw(st.sampled_from(["alice", "bob", "carol"])),
        roles=tuple(draw(st.lists(st.sampled_from(["admin", "agent", "oncall"]), max_size=2, unique=True))),
        agent=draw(st.sampled_from(["desk", "other"])),
    )
