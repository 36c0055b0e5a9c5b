"""Structs: the kernel's value classes, declared like ``@dataclass`` and made at a tenth of its cost.

The Claude Code hook is a new process per tool event, so every class the kernel and the stores declare is
built again each time the hook starts. ``@dataclass`` compiles four or five generated methods per class
(``__init__``, ``__repr__``, ``__eq__``, and a frozen class's ``__setattr__``/``__delattr__``/``__hash__``):
for the kernel's classes that was a third of the hook's start-up. ``@struct`` compiles one method, the
``__init__`` (the one on the hot path, as fast as the dataclass one), when the class is first instantiated,
and shares the rest as ordinary functions that read a class's fields::

    @struct(frozen=True, slots=True)
    class Reserve:
        scopes: list[tuple[str, Decimal]]
        amount: Decimal
        gate: float | None = None
        labels: list[str] = field(default_factory=list)

It means what ``@dataclass`` means for the options the kernel uses — ``frozen``, ``slots``, defaults,
``field(default=…, default_factory=…, repr=…, compare=…)``, ``ClassVar`` annotations left out, fields
inherited from a struct base, ``__post_init__``, ``__match_args__``, equality and (frozen) hashing on the
compared fields, a mutable default refused, pickling and copying of frozen slotted structs — and nothing
more. ``fields_of``, ``as_dict`` and ``replace`` stand in for ``dataclasses.fields``, ``asdict`` and
``replace``.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar

__all__ = ["Field", "FrozenInstanceError", "as_dict", "field", "fields_of", "replace", "struct"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Raised on an assignment to (or deletion of) a field of a frozen struct."""


class Field:
    """One field of a struct: its name, default (or default factory), and whether repr and == see it."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True,
                 compare: bool = True) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("a field cannot have both a default and a default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING or self.default_factory is not MISSING

    def __repr__(self) -> str:
        return f"Field({self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING, repr: bool = True,
          compare: bool = True) -> Any:
    """A field with options, as ``dataclasses.field``: ``x: list[str] = field(default_factory=list)``."""
    return Field(default, default_factory, repr, compare)


_FIELDS = "__struct_fields__"


def fields_of(obj: Any) -> tuple[Field, ...]:
    """A struct's (or a struct class's) fields, in order."""
    found = getattr(obj, _FIELDS, None)
    if found is None:
        raise TypeError(f"{obj!r} is not a struct")
    return found


def as_dict(obj: Any) -> dict[str, Any]:
    """A struct as a dict of its fields, structs inside it (and in lists, tuples, dicts) converted too."""
    return {f.name: _plain(getattr(obj, f.name)) for f in fields_of(obj)}


def _plain(value: Any) -> Any:
    if hasattr(type(value), _FIELDS):
        return as_dict(value)
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def replace(obj: Any, /, **changes: Any) -> Any:
    """A copy of a struct with ``changes`` applied (through ``__init__``, so a frozen struct stays valid)."""
    for f in fields_of(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


def struct(cls: type | None = None, /, *, frozen: bool = False, slots: bool = False) -> Any:
    """Make ``cls`` a struct (see the module docstring): ``@struct`` or ``@struct(frozen=True, slots=True)``."""

    def wrap(c: type) -> type:
        return _make(c, frozen, slots)

    return wrap if cls is None else wrap(cls)


# ------------------------------------------------------------------------------------------ building


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return annotation is ClassVar or getattr(annotation, "__origin__", None) is ClassVar


def _collect(cls: type) -> list[Field]:
    """Inherited struct fields first (a redeclared one keeps its place), then this class's own."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, _FIELDS, ()):
            found[f.name] = f
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063 - own ones only, no inspect
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(f.default, list | dict | set):
            raise ValueError(f"mutable default {type(f.default).__name__} for field {name} of {cls.__qualname__}: "
                             "use field(default_factory=…)")
        found[name] = f
    ordered = list(found.values())
    seen_default = False
    for f in ordered:
        if f.has_default:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument in {cls.__qualname__}")
    return ordered


def _init(cls: type, fields: list[Field], frozen: bool) -> Callable[..., None]:
    """The one generated method: ``__init__``, compiled once per class."""
    env: dict[str, Any] = {"_setattr": object.__setattr__, "_MISSING": MISSING}
    params, body = [], []
    for f in fields:
        if f.default_factory is not MISSING:
            env[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            value = f"_factory_{f.name}() if {f.name} is _MISSING else {f.name}"
        elif f.default is not MISSING:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            value = f.name
        else:
            params.append(f.name)
            value = f.name
        body.append(f"    _setattr(self, {f.name!r}, {value})" if frozen else f"    self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<struct {cls.__qualname__}>", "exec"), env, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _deferred_init(fields: list[Field], frozen: bool, owner: list[type]) -> Callable[..., None]:
    """An ``__init__`` that compiles the real one the first time the class is instantiated, puts it in
    its place and runs it: a process pays only for the classes it uses (the hook uses fewer than half)."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        cls = owner[0]
        init = _init(cls, fields, frozen)
        type.__setattr__(cls, "__init__", init)
        init(self, *args, **kwargs)

    return __init__


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _make(cls: type, frozen: bool, slots: bool) -> type:
    fields = _collect(cls)
    names = tuple(f.name for f in fields)
    shown = tuple(f.name for f in fields if f.repr)
    compared = _getter(tuple(f.name for f in fields if f.compare))
    shown_values = _getter(shown)
    for f in fields:  # a slotted class cannot keep a class attribute of a field's name; a Field never stays
        if f.name in cls.__dict__ and (slots or isinstance(cls.__dict__[f.name], Field)):
            delattr(cls, f.name)

    def __repr__(self: Any) -> str:
        values = shown_values(self)
        return f"{type(self).__qualname__}({', '.join(f'{n}={v!r}' for n, v in zip(shown, values, strict=True))})"

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return compared(self) == compared(other)
        return NotImplemented

    owner: list[type] = [cls]  # the class made below (a slotted one is a new class)
    methods: dict[str, Any] = {"__match_args__": names, _FIELDS: tuple(fields)}
    for name, made_here in (("__init__", None), ("__repr__", __repr__), ("__eq__", __eq__)):
        if name not in cls.__dict__:  # a method the class writes itself is kept, as a dataclass keeps it
            methods[name] = made_here if made_here is not None else _deferred_init(fields, frozen, owner)
    if frozen:
        def __hash__(self: Any) -> int:
            return hash(compared(self))

        def __setattr__(self: Any, name: str, value: Any) -> None:
            if type(self) is owner[0] or name in names:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            object.__setattr__(self, name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is owner[0] or name in names:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            object.__delattr__(self, name)

        methods.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    elif "__hash__" not in cls.__dict__:
        methods["__hash__"] = None  # mutable and compared by value: unhashable, as a dataclass is
    if frozen and slots:
        def __getstate__(self: Any) -> tuple[Any, ...]:
            return tuple(getattr(self, n) for n in names)

        def __setstate__(self: Any, state: tuple[Any, ...]) -> None:
            for n, v in zip(names, state, strict=True):
                object.__setattr__(self, n, v)

        methods.update(__getstate__=__getstate__, __setstate__=__setstate__)

    if slots:
        namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        inherited = {s for base in cls.__mro__[1:] for s in getattr(base, "__slots__", ())}
        namespace["__slots__"] = tuple(n for n in names if n not in inherited)
        namespace.update(methods)
        made = type(cls)(cls.__name__, cls.__bases__, namespace)
        made.__qualname__ = cls.__qualname__
    else:
        for key, value in methods.items():
            setattr(cls, key, value)
        made = cls
    owner[0] = made
    return made
