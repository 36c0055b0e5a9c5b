from decimal import Decimal

import pytest

from corral import Blocked, ConfigError, GovernanceError, Governor


def noop(**kwargs):
    return kwargs


def test_reversible_without_compensation_is_refused_at_registration():
    gov = Governor()
    with pytest.raises(ConfigError, match="'refund' is reversible but has no compensation"):
        gov.register("refund", noop, effect="reversible")
    assert "refund" not in gov.tools  # a failed registration changes nothing


def test_unknown_effect_is_a_config_error_naming_the_tool():
    gov = Governor()
    with pytest.raises(ConfigError, match="tool 'x': unknown effect 'writey'"):
        gov.register("x", noop, effect="writey")
    with pytest.raises(ConfigError, match="unknown effect"):

        @gov.tool(effect="destructive")
        def y():
            pass

    assert gov.tools == {}


def test_duplicate_name_is_refused_and_the_first_registration_kept():
    gov = Governor()
    gov.register("a", noop, effect="read")
    with pytest.raises(ConfigError, match="'a' is already registered"):
        gov.register("a", lambda: 1, effect="irreversible")
    assert gov.tools["a"].effect == "read"


def test_config_error_is_a_value_error_and_governance_error():
    gov = Governor()
    with pytest.raises(ValueError):
        gov.register("", noop)
    with pytest.raises(GovernanceError):
        gov.register("ok", "not callable")


def test_bad_options_are_named():
    gov = Governor()
    with pytest.raises(ConfigError, match="unknown option"):
        gov.register("a", noop, effct="read")
    with pytest.raises(ConfigError, match="cost must be a finite number"):
        gov.register("b", noop, cost=-1)
    with pytest.raises(ConfigError, match="retryable must be True or False"):
        gov.register("c", noop, retryable="yes")


def test_default_effect_is_irreversible():
    gov = Governor()
    gov.register("mystery", noop)
    assert gov.tools["mystery"].effect == "irreversible"


def test_decorator_is_checked_at_first_use_so_compensate_can_follow():
    gov = Governor()

    @gov.tool(effect="reversible")
    def book(room: str) -> str:
        return room

    @book.compensate
    def cancel(call):
        pass

    s = gov.session("alice")
    with s.decide():
        pass
    with s.commit() as tx:
        assert tx.call("book", room="r1") == "r1"


def test_decorator_without_compensation_fails_at_first_use_with_a_trace():
    gov = Governor(phases=False)

    @gov.tool(effect="reversible")
    def book(room: str) -> str:
        return room

    s = gov.session("alice")
    with pytest.raises(ConfigError, match="no compensation") as info:
        s.call("book", room="r1")
    assert info.value.trace.decision == "blocked"
    assert s.traces[-1].decision == "blocked"


def test_effect_fn_refines_per_call():
    gov = Governor()
    deleted = []

    def delete(path: str, dry_run: bool = False):
        if not dry_run:
            deleted.append(path)
        return path

    gov.register(
        "delete", delete, effect="irreversible", effect_fn=lambda a: "read" if a["dry_run"] else "irreversible"
    )
    s = gov.session("alice")
    assert s.call("delete", path="/x", dry_run=True) == "/x"  # a read: allowed in explore
    with pytest.raises(Blocked, match="not allowed in explore"):
        s.call("delete", path="/x")
    assert deleted == []


def test_effect_fn_returning_garbage_blocks():
    gov = Governor()
    gov.register("t", noop, effect="read", effect_fn=lambda a: "sideways")
    with pytest.raises(Blocked, match="governance fault"):
        gov.session().call("t")


def test_cost_callable_and_exact_money():
    gov = Governor(budget=1, phases=False)
    gov.register("tick", noop, effect="read", cost=lambda a: a["n"] * 0.1)
    s = gov.session()
    for _ in range(3):
        s.call("tick", n=1)
    assert s.budget.spent == pytest.approx(0.3)
    assert gov.budget_state(s.id).tightest.spent == Decimal("0.3")


# -- a **kwargs-only function is registered without inspect, and means what inspect would say -----------


def _any_keywords(**args):
    """Takes whatever it is given."""
    return args


async def _any_keywords_async(**args):
    """Async, so inspect decides."""
    return args


def _documented_at_length(**args):
    """First line.

    More lines: inspect cleans the text up.
    """
    return args


def _named(a, b=2, **rest):
    return a


def test_kwargs_only_tools_register_as_inspect_would_see_them() -> None:
    import functools
    import inspect
    import subprocess
    import sys

    from corral.governance.effects import ToolSpec

    @functools.wraps(_any_keywords)
    def wrapped(**args):
        return args

    for fn in (_any_keywords, _any_keywords_async, _documented_at_length, _named, wrapped):
        spec = ToolSpec.build(fn.__name__, fn, {"effect": "read"})
        assert spec.description == (inspect.getdoc(fn) or "").split("\n")[0]
        assert spec.is_async == inspect.iscoroutinefunction(fn)
        assert spec.compensate_is_async is False
        given = {"a": 1, "z": [2]}
        assert spec.bind(given) == {**inspect.signature(fn).bind(**given).arguments.get("args", {}),
                                    **({"a": 1, "b": 2, "z": [2]} if fn is _named else {})}
    spec = ToolSpec.build("t", _any_keywords, {"effect": "reversible", "compensate": _any_keywords_async})
    assert spec.compensate_is_async is True
    # and a process that only registers such tools never loads inspect
    code = ("import sys\nfrom corral.governance.effects import ToolSpec\n"
            "def body(**args):\n    'One line.'\n"
            "s = ToolSpec.build('Read', body, {'effect': 'read'})\n"
            "assert s.bind({'file_path': '/x'}) == {'file_path': '/x'} and s.description == 'One line.'\n"
            "print('inspect' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
