"""Tools and their effects: what a tool may do to the world decides when it may run (DESIGN §2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from types import FunctionType
from typing import TYPE_CHECKING, Any

from corral.errors import ConfigError
from corral.governance.flow import tool_labels
from corral.struct import field, struct

if TYPE_CHECKING:
    import inspect

READ = "read"
REVERSIBLE = "reversible"
IRREVERSIBLE = "irreversible"
EFFECTS = (READ, REVERSIBLE, IRREVERSIBLE)

_OPTIONS = frozenset(
    {"effect", "effect_fn", "cost", "cost_fn", "compensate", "retryable", "compensate_unknown", "description",
     "labels", "tags", "untrusted"}
)


def to_money(value: Any, what: str) -> Decimal:
    """Exact decimal money from a user number; floats go through ``str`` so 0.1 stays 0.1."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            raise ConfigError(f"{what} must be a number, got {value!r}") from None
    else:
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if not result.is_finite() or result < 0:
        raise ConfigError(f"{what} must be a finite number ≥ 0, got {value!r}")
    return result


_CO_VARARGS, _CO_VARKEYWORDS, _CO_COROUTINE = 0x04, 0x08, 0x80  # inspect.CO_*, without importing inspect


def _takes_any_keywords(fn: Any) -> bool:
    """A plain, synchronous function whose only parameter is ``**kwargs``, documented in one line (a Claude
    Code tool's body, an MCP tool's): every call's arguments bind as given, so ``inspect`` has nothing to
    say about it — what ``inspect`` would say, the fields of ``ToolSpec.build`` say directly."""
    if type(fn) is not FunctionType or hasattr(fn, "__wrapped__") or hasattr(fn, "__signature__"):
        return False
    code = fn.__code__
    flags = code.co_flags
    doc = fn.__doc__
    return (code.co_argcount == 0 and code.co_kwonlyargcount == 0 and code.co_posonlyargcount == 0
            and bool(flags & _CO_VARKEYWORDS) and not flags & (_CO_VARARGS | _CO_COROUTINE)
            and (doc is None or (isinstance(doc, str) and "\n" not in doc)))


def check_effect(effect: Any, tool: str) -> str:
    if effect not in EFFECTS:
        raise ConfigError(
            f"tool {tool!r}: unknown effect {effect!r}; expected one of read, reversible, irreversible"
        )
    return effect


@struct(slots=True)
class ToolSpec:
    """A registered tool: the callable plus everything governance needs to know about it."""

    name: str
    fn: Callable[..., Any]
    effect: str = IRREVERSIBLE
    effect_fn: Callable[[Mapping[str, Any]], str] | None = None
    cost: Decimal | Callable[..., Any] = Decimal(0)
    cost_fn: Callable[[Any], Any] | None = None
    compensate: Callable[..., Any] | None = None
    retryable: bool = False
    compensate_unknown: bool = False
    description: str = ""
    labels: frozenset[str] = frozenset()  # what its results add to the session (DESIGN §15)
    tags: frozenset[str] = frozenset()  # what the tool is (egress, …)
    signature: inspect.Signature | None = field(default=None, repr=False)
    binder: _BindPlan | None = field(default=None, repr=False, compare=False)
    is_async: bool = False
    checked: bool = False

    @classmethod
    def build(cls, name: Any, fn: Any, options: Mapping[str, Any]) -> ToolSpec:
        """Validate everything that can be validated now; the compensation check waits for ``check``."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a tool name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise ConfigError(f"tool {name!r}: {fn!r} is not callable")
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigError(f"tool {name!r}: unknown option(s) {', '.join(sorted(unknown))}")
        effect = check_effect(options.get("effect", IRREVERSIBLE), name)
        effect_fn = options.get("effect_fn")
        if effect_fn is not None and not callable(effect_fn):
            raise ConfigError(f"tool {name!r}: effect_fn must be callable")
        cost = options.get("cost", 0)
        if cost is None:
            cost = 0
        if not callable(cost):
            cost = to_money(cost, f"tool {name!r}: cost")
        cost_fn = options.get("cost_fn")
        if cost_fn is not None and not callable(cost_fn):
            raise ConfigError(f"tool {name!r}: cost_fn must be callable")
        compensate = options.get("compensate")
        if compensate is not None and not callable(compensate):
            raise ConfigError(f"tool {name!r}: compensate must be callable")
        for flag in ("retryable", "compensate_unknown"):
            if not isinstance(options.get(flag, False), bool):
                raise ConfigError(f"tool {name!r}: {flag} must be True or False")
        labels, tags = tool_labels(options, name)
        if _takes_any_keywords(fn):  # binds every call as given: no signature to read (nor inspect to load)
            signature, doc, is_async = None, fn.__doc__.expandtabs().lstrip() if fn.__doc__ else "", False
        else:
            import inspect

            try:
                signature = inspect.signature(fn)
            except (TypeError, ValueError):
                signature = None
            doc, is_async = (inspect.getdoc(fn) or "").split("\n")[0], inspect.iscoroutinefunction(fn)
        spec = cls(
            name=name,
            fn=fn,
            effect=effect,
            effect_fn=effect_fn,
            cost=cost,
            cost_fn=cost_fn,
            compensate=compensate,
            retryable=options.get("retryable", False),
            compensate_unknown=options.get("compensate_unknown", False),
            description=options.get("description") or doc,
            labels=labels,
            tags=tags,
            signature=signature,
            is_async=is_async,
        )
        spec.set_compensation(compensate)
        return spec

    def set_compensation(self, compensate: Callable[..., Any] | None) -> None:
        self.compensate = compensate

    @property
    def compensate_is_async(self) -> bool:
        """Whether the compensation is a coroutine function — worked out when asked, not at registration
        (the hook registers every Claude Code tool on each event and runs no compensation)."""
        if self.compensate is None:
            return False
        import inspect

        return inspect.iscoroutinefunction(self.compensate)

    def check(self) -> None:
        """The checks that need the whole declaration, compensation included."""
        if self.effect == REVERSIBLE and self.compensate is None:
            raise ConfigError(
                f"tool {self.name!r} is reversible but has no compensation: pass compensate=… "
                f"or decorate one with @{self.name}.compensate (or declare it irreversible)"
            )
        self.checked = True

    def bind(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as the tool will receive them, signature defaults applied.

        Raises ``TypeError`` naming the problem when they do not fit the signature.
        """
        if self.signature is None:
            return dict(args)
        plan = self.binder
        if plan is None:
            plan = self.binder = _BindPlan.of(self.signature)
        if plan.simple:  # the common case, without inspect's general machinery; anything odd goes below
            names, defaults = plan.names, plan.defaults
            extra = [k for k in args if k not in names]
            if not extra or plan.var_keyword:
                try:
                    bound = {name: args[name] if name in args else defaults[name] for name in names}
                except KeyError:
                    pass  # a required argument is missing: inspect names it
                else:
                    for key in extra:  # **kwargs: the rest, in the order given
                        bound[key] = args[key]
                    return bound
        import inspect

        bound = self.signature.bind(**args)
        bound.apply_defaults()
        result: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            kind = self.signature.parameters[key].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                result.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                result[key] = value
        return result

    def effect_for(self, args: Mapping[str, Any]) -> str:
        if self.effect_fn is None:
            return self.effect
        effect = self.effect_fn(args)
        if effect not in EFFECTS:
            raise ConfigError(f"tool {self.name!r}: effect_fn returned {effect!r}, not an effect")
        return effect

    def estimate(self, args: Mapping[str, Any]) -> Decimal:
        if callable(self.cost):
            return to_money(self.cost(args), f"tool {self.name!r}: cost(args)")
        return self.cost


@struct(frozen=True, slots=True)
class _BindPlan:
    """A signature of plain named parameters, read once: binding it is a dict lookup per parameter."""

    simple: bool
    names: dict[str, None]  # in signature order (a dict: ordered, and a fast membership test)
    defaults: dict[str, Any]
    var_keyword: bool  # a **kwargs parameter takes every other name

    @classmethod
    def of(cls, signature: inspect.Signature) -> _BindPlan:
        import inspect

        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        params = list(signature.parameters.values())
        var_keyword = bool(params) and params[-1].kind is inspect.Parameter.VAR_KEYWORD
        plain = params[:-1] if var_keyword else params
        simple = all(p.kind in named for p in plain)
        defaults = {p.name: p.default for p in plain if p.default is not inspect.Parameter.empty}
        return cls(simple, dict.fromkeys(p.name for p in plain), defaults, var_keyword)
