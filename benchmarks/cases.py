"""The benchmark rows: the floor, the governed call, how it scales with rules, and Cedar side by side.

Every governed row calls ``lookup(order_id="A1")`` as ``alice`` (role ``analyst``) in ``explore``: a
read that one ``ALLOW`` rule lets through, with the full trace written to the in-memory store. The
decision rows time ``gov.check`` (the dry run: the same decision, no trace, nothing spent), and the
Cedar rows time the same request against the same rules translated to Cedar (``benchmarks.cedar``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.cedar import CedarPolicies, Request
from benchmarks.policies import CALLED_TOOL, FEW, Rule, corral_text, other_tools, ruleset
from benchmarks.registry import Run, Target, Versus, case
from benchmarks.timing import Stats

FLOOR = "floor"
KERNEL = "governed call (in-memory store)"
SCALING = "governed call with N rules (full trace)"
DECISION = "decision only (gov.check, no trace)"
CEDAR = "Cedar via cedarpy (batched, policies pre-parsed)"
CEDAR_CORE = "Cedar's Rust authorizer alone (cedarpy's authz_duration_micros)"

RULE_COUNTS = (10, 100, 1_000, 10_000)
CEDAR_COUNTS = (10, 1_000, 10_000)

READ_CALL = f"governed read call ({len(FEW)} rules)"
READ_TARGET_US = 20.0  # p50 of the in-memory governed read with its full trace (kernel-seams issue)
"""The in-memory governed read: the row the store rows are compared with."""

BENCH_REQUEST = Request(CALLED_TOOL, {"order_id": "A1"})
"""The timed call, as corral and Cedar see it."""


# ------------------------------------------------------------------------------------------ tools


def lookup(order_id: str, **options: Any) -> dict[str, Any]:
    """The called tool: a trivial read."""
    return {"order_id": order_id, "status": "shipped"}


def other_tool(**args: Any) -> dict[str, Any]:
    return args


def spend(amount: float) -> None:
    """A read that costs ``amount``: how the agreement check puts a session at a given budget level."""


# ------------------------------------------------------------------------------------ fixtures


def build_governor(
    rules: Sequence[Rule],
    *,
    budget: float | None = None,
    tools: Sequence[str] = (),
    store: str | None = None,
) -> Any:
    """A governor over ``rules`` with ``lookup`` and ``tools`` registered as reads (``store``: None is
    in memory; a store URL lets a row measure that store)."""
    from corral import Governor

    gov = Governor(agent="bench", rules=corral_text(tuple(rules)), budget=budget, store=store)
    gov.register(CALLED_TOOL, lookup, effect="read")
    for name in tools:
        gov.register(name, other_tool, effect="read")
    gov.register("spend", spend, effect="read", cost=lambda args: args["amount"])
    return gov


def verification_requests(rules: Sequence[Rule], *, budget: bool = False) -> list[Request]:
    """Calls that exercise every rule shape: each should get the same answer from corral and Cedar."""
    out = [
        BENCH_REQUEST,
        Request(CALLED_TOOL, {"order_id": "Z9"}),  # FLAG lookup WHEN arg.order_id MATCHES "Z*"
        Request(CALLED_TOOL, {"order_id": "XTESTX"}),  # FLAG look* …
        Request(CALLED_TOOL, {"order_id": "A1", "limit": 5000}),  # REQUIRE APPROVAL … arg.limit ABOVE 1000
        Request(CALLED_TOOL, {"order_id": "A1", "limit": 10}),
        Request(CALLED_TOOL, {"order_id": "DELETED"}),  # BLOCK … IN (DELETED, PURGED)
        Request(CALLED_TOOL, {"order_id": "A1"}, principal="bob", roles=("suspended",)),
        Request(CALLED_TOOL, {"order_id": "A1"}, principal="carol", roles=("guest",)),
        Request(CALLED_TOOL, {"order_id": "A1"}, phase="commit"),  # BLOCK … phase IS commit UNLESS admin
        Request(CALLED_TOOL, {"order_id": "A1"}, principal="dave", roles=("admin",), phase="commit"),
        Request(CALLED_TOOL, {"order_id": "Z1"}, phase="decide"),
    ]
    if budget:
        out += [
            Request(CALLED_TOOL, {"order_id": "A1"}, budget_pct=95.0),  # BLOCK * WHEN budget ABOVE 90%
            Request(CALLED_TOOL, {"order_id": "A1"}, budget_pct=50.0),
        ]
    tools = other_tools(tuple(rules))
    picked = list(dict.fromkeys(tools[:2] + tools[-1:]))
    variants: list[tuple[dict[str, Any], str, tuple[str, ...], str]] = [
        ({"amount": 50, "note": "routine", "mode": "read", "region": "eu"}, "alice", ("analyst",), "explore"),
        (
            {"amount": 20000, "note": "urgent!", "mode": "write", "region": "asia"},
            "alice",
            ("analyst",),
            "explore",
        ),
        ({"amount": 700, "note": "later", "mode": "read", "region": "us"}, "carol", ("guest",), "explore"),
        ({"amount": 120, "mode": "write", "region": "asia"}, "dave", ("admin",), "commit"),
        ({}, "alice", ("analyst",), "explore"),  # every arg missing: BLOCK / REQUIRE APPROVAL fail closed
    ]
    for tool in picked:
        out += [Request(tool, args, principal=p, roles=r, phase=ph) for args, p, r, ph in variants]
    return out


def corral_decision(gov: Any, req: Request, limit: float | None = None) -> str:
    """What ``gov.check`` says about ``req``, with a session put in the request's phase and budget level."""
    s = gov.session(principal=req.principal, roles=list(req.roles))
    if req.budget_pct:
        if limit is None:
            raise ValueError("a request at a budget level needs a governor with a budget")
        s.call("spend", amount=req.budget_pct / 100 * limit)
    if req.phase == "explore":
        return gov.check(req.tool, req.args, session=s).decision
    with s.decide():
        if req.phase == "decide":
            return gov.check(req.tool, req.args, session=s).decision
    with s.commit():
        return gov.check(req.tool, req.args, session=s).decision


def disagreements(
    gov: Any, cedar: CedarPolicies, requests: Sequence[Request], limit: float | None = None
) -> list[tuple[Request, str, str]]:
    """``(request, corral, cedar)`` for every request on which the two decide differently."""
    theirs = cedar.decisions(requests)
    out = []
    for req, cedar_says in zip(requests, theirs, strict=True):
        ours = corral_decision(gov, req, limit)
        if ours != cedar_says:
            out.append((req, ours, cedar_says))
    return out


def governor_for(run: Run, n: int) -> Any:
    """The governor with ``n`` rules, built once per run and shared by the call, decision and Cedar rows."""

    def build() -> Any:
        rules = ruleset(n)
        tools = {r.tool for r in verification_requests(rules)} - {CALLED_TOOL}
        t0 = time.perf_counter()
        gov = build_governor(rules, tools=sorted(tools))
        run.note(f"corral: {n:,} rules parsed and compiled in {(time.perf_counter() - t0) * 1e3:,.0f} ms")
        return gov

    return run.shared(f"governor-{n}", build)


# --------------------------------------------------------------------------------- measurements


def governed_calls(run: Run, gov: Any) -> list[float]:
    """``s.call("lookup", order_id="A1")``, full pipeline and trace, a fresh session every batch."""
    probe = gov.session(principal="alice", roles=["analyst"])
    probe.call(CALLED_TOOL, order_id="A1")
    decision = probe.traces[-1].decision
    if decision != "allowed":
        run.problem(f"the timed call was {decision}, expected allowed: {probe.traces[-1].reason}")

    def fresh() -> Callable[[], object]:
        call = gov.session(principal="alice", roles=["analyst"]).call
        return lambda: call(CALLED_TOOL, order_id="A1")

    return run.sample_sessions(fresh)


def decisions_only(run: Run, gov: Any) -> list[float]:
    """``gov.check("lookup", {"order_id": "A1"}, session=s)``: the decision without trace or outcome."""

    def fresh() -> Callable[[], object]:
        s = gov.session(principal="alice", roles=["analyst"])
        check, args = gov.check, {"order_id": "A1"}
        return lambda: check(CALLED_TOOL, args, session=s)

    return run.sample_sessions(fresh)


def cedar_for(run: Run, n: int) -> CedarPolicies:
    """The Cedar translation of the ``n``-rule set, parsed once per group; on first use its answers are
    checked against corral's for every verification request, and a disagreement fails the run."""

    def build() -> CedarPolicies:
        rules = ruleset(n)
        requests = verification_requests(rules)
        cedar = CedarPolicies(rules, requests)
        run.note(f"Cedar: {n:,} policies parsed in {cedar.parse_ms:,.0f} ms (once, outside the timing)")
        if run.round == 0:
            wrong = disagreements(governor_for(run, n), cedar, requests)
            if not wrong:
                run.note(f"Cedar agrees with corral on all {len(requests)} check requests at {n:,} rules")
            else:
                run.problem(f"Cedar and corral disagree on {len(wrong)} of {len(requests)} requests, {n:,} rules:")
            for req, ours, theirs in wrong:
                run.problem(
                    f"  {req.tool}({req.args}) as {req.principal}{list(req.roles)} in {req.phase}: "
                    f"corral {ours}, Cedar {theirs}"
                )
        return cedar

    return run.shared(f"cedar-{n}", build)


def cedar_requests(run: Run, n: int) -> list[float]:
    """Per-request time of ``cedarpy.is_authorized_batch`` with ``n`` translated policies.

    The policy set and entities are parsed once (``PolicySet`` / ``Entities`` handles) and each request's
    context is serialised before timing, so what is timed is Cedar's request building and authorizer
    plus cedarpy's call overhead, amortised over the batch — the most favourable way to call Cedar from
    Python.
    """
    m = run.mode
    cedar = cedar_for(run, n)
    # Size the batch and the repeats to the time this row may take: Cedar at 10,000 policies costs
    # milliseconds per request, so its batches shrink (not below 200 requests) before its repeats do.
    budget = run.cedar_budget_s
    request = BENCH_REQUEST.cedar()
    smallest = min(200, m.cedar_batch)
    t0 = time.perf_counter()
    cedar.authorize([request] * smallest)  # also the warm-up
    per_request = (time.perf_counter() - t0) / smallest
    size = int(min(m.cedar_batch, max(smallest, budget / (m.cedar_repeats * per_request))))
    repeats = int(max(3, min(m.cedar_repeats, budget / (size * per_request))))
    batch = [request] * size
    if size != m.cedar_batch or repeats != m.cedar_repeats:
        run.note(f"Cedar, {n:,} policies: {repeats} batches of {size} requests (to fit {budget:g} s)")

    def op() -> object:
        return cedar.authorize(batch)

    return run.sample(op, repeats, per=size, warmup=0)


def cedar_authorizer(run: Run, n: int) -> list[float]:
    """Cedar's own authorizer time per request, as cedarpy reports it (``authz_duration_micros``).

    The Rust evaluation alone — no request building, no Python — so the floor any binding of Cedar
    could reach. Whole microseconds: coarse, but enough at tens of µs and up.
    """
    batch = [BENCH_REQUEST.cedar()] * min(200, run.mode.cedar_batch)
    results = cedar_for(run, n).authorize(batch)
    return [r.metrics["authz_duration_micros"] * 1e3 for r in results]


# ------------------------------------------------------------------------------------------ rows


def _rules(n: int) -> str:
    return f"{n:,} rules"


def _policies(n: int) -> str:
    return f"Cedar, {n:,} policies"


def _authorizer(n: int) -> str:
    return f"Cedar authorizer only, {n:,} policies"


@case("raw function call", section=FLOOR)
def raw_call(run: Run) -> list[float]:
    """The floor: the tool called directly, many calls per sample so the clock does not dominate."""
    inner = run.mode.raw_inner
    return run.sample(lambda: lookup(order_id="A1"), max(50, run.mode.iterations // 20), inner=inner)


@case(READ_CALL, section=KERNEL, versus=[Versus("raw function call")])
def governed_read(run: Run) -> list[float]:
    gov = run.shared("governor-few", lambda: build_governor(FEW))
    samples = governed_calls(run, gov)
    p50 = Stats.of(samples).p50 / 1e3
    run.note(f"{READ_CALL}: p50 {p50:,.1f} µs in memory with a full trace; target ≤ {READ_TARGET_US:g} µs: "
             f"{'met' if p50 <= READ_TARGET_US else 'NOT met'} (reported, not enforced)")
    return samples


def _register_scaling() -> None:
    """The governed, decision and Cedar rows for each rule count: one group per count, so each
    count's governor (and Cedar policy set) is built once and dropped before the next count."""
    governed = {
        10: [Versus(_policies(10), Target("<=", 0.5, "at 10 rules, half of Cedar at 10 policies")),
             Versus(_authorizer(10))],
        100: [Versus(f"governed call, {_rules(10)}")],
        1_000: [
            Versus(_policies(1_000), Target("<=", 0.1, "≥10× faster than Cedar with the same 1,000 policies")),
            Versus(_policies(10), Target("<=", 1.0, "no slower than Cedar with 10 policies")),
        ],
        10_000: [
            Versus(f"governed call, {_rules(10)}", Target("<=", 2.0, "within 2× of 10 rules")),
            Versus(_policies(10_000)),
        ],
    }
    for n in RULE_COUNTS:
        group = f"{n} rules"
        case(f"governed call, {_rules(n)}", section=SCALING, versus=governed[n], group=group)(
            lambda run, n=n: governed_calls(run, governor_for(run, n))
        )
        case(
            f"decision only, {_rules(n)}",
            section=DECISION,
            versus=[Versus(f"governed call, {_rules(n)}", Target("<=", 0.5, "gov.check: half a governed call"))],
            group=group,
        )(lambda run, n=n: decisions_only(run, governor_for(run, n)))
        if n in CEDAR_COUNTS:
            case(
                _policies(n),
                section=CEDAR,
                versus=[Versus(_policies(10))] if n != 10 else [],
                modes=("full",) if n == 10_000 else None,  # Cedar at 10,000 takes too long for --quick
                group=group,
            )(lambda run, n=n: cedar_requests(run, n))
            case(
                _authorizer(n),
                section=CEDAR_CORE,
                versus=[Versus(_policies(n))],
                modes=("full",) if n == 10_000 else None,
                group=group,
            )(lambda run, n=n: cedar_authorizer(run, n))


_register_scaling()
