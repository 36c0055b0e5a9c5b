"""``corral.struct``: structs behave as the dataclasses they replace, for every option the kernel uses.

Each behaviour is checked side by side with ``@dataclass`` on the same class body, so a difference
between the two is a failing test, not a surprise in the kernel.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import ClassVar

import pytest

from corral.struct import FrozenInstanceError, as_dict, field, fields_of, replace, struct


def _both(frozen: bool, slots: bool) -> tuple[type, type]:
    """The same class body as a dataclass and as a struct."""

    def body() -> type:
        class Point:
            """A point."""

            kind: ClassVar[str] = "point"
            x: int
            y: int = 0
            tags: list[str] = dataclasses.field(default_factory=list)
            note: str = dataclasses.field(default="", repr=False, compare=False)

            def norm(self) -> int:
                return abs(self.x) + abs(self.y)

        return Point

    def body_struct() -> type:
        class Point:
            """A point."""

            kind: ClassVar[str] = "point"
            x: int
            y: int = 0
            tags: list[str] = field(default_factory=list)
            note: str = field(default="", repr=False, compare=False)

            def norm(self) -> int:
                return abs(self.x) + abs(self.y)

        return Point

    return (dataclasses.dataclass(frozen=frozen, slots=slots)(body()),
            struct(frozen=frozen, slots=slots)(body_struct()))


OPTIONS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize(("frozen", "slots"), OPTIONS)
def test_init_defaults_repr_eq_as_a_dataclass(frozen: bool, slots: bool) -> None:
    dc, rc = _both(frozen, slots)
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((), {"x": 3, "tags": ["a"], "note": "n"})]:
        d, r = dc(*args, **kwargs), rc(*args, **kwargs)
        assert repr(d).replace(".body.", ".body_struct.") == repr(r)
        assert (d.x, d.y, d.tags, d.note) == (r.x, r.y, r.tags, r.note)
        assert r.norm() == d.norm()
    assert rc(1) == rc(1, 0, [], "other note")  # note is not compared
    assert rc(1) != rc(2)
    assert rc(1).__eq__(dc(1)) is NotImplemented  # another class is never equal
    assert rc(1).tags is not rc(1).tags  # a fresh list each time
    assert rc.__match_args__ == dc.__match_args__ == ("x", "y", "tags", "note")
    assert rc.kind == "point" and "kind" not in [f.name for f in fields_of(rc)]
    assert rc.__doc__ == "A point."
    with pytest.raises(TypeError):
        rc()  # x is required
    with pytest.raises(TypeError):
        rc(1, 2, [], "", "extra")


@pytest.mark.parametrize(("frozen", "slots"), OPTIONS)
def test_frozen_hashing_and_slots_as_a_dataclass(frozen: bool, slots: bool) -> None:
    dc, rc = _both(frozen, slots)
    d, r = dc(1, tags=[]), rc(1, tags=[])
    assert (dc.__hash__ is None) == (rc.__hash__ is None) == (not frozen)
    if frozen:
        d2, r2 = dc(1, 2, tags=()), rc(1, 2, tags=())  # hashable when every compared field is
        assert hash(r2) == hash(rc(1, 2, tags=(), note="x"))
        assert {r2, rc(1, 2, tags=())} == {r2}
        assert hash(d2) == hash(d2)
        with pytest.raises(FrozenInstanceError):
            r.x = 5
        with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError, as in dataclasses
            del r.y
    else:
        r.x = 5
        assert r.x == 5
    assert hasattr(r, "__dict__") == hasattr(d, "__dict__") == (not slots)
    if slots:
        with pytest.raises((AttributeError, TypeError)):
            r.unknown = 1


@pytest.mark.parametrize(("frozen", "slots"), OPTIONS)
def test_pickle_and_copy_keep_the_value(frozen: bool, slots: bool) -> None:
    _, rc = _both(frozen, slots)
    globals()["Point"] = rc  # pickle finds the class by its module-level name
    rc.__qualname__ = "Point"
    try:
        r = rc(4, 5, ["t"], "n")
        for back in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r), copy.copy(r)):
            assert type(back) is rc
            assert (back.x, back.y, back.tags, back.note) == (4, 5, ["t"], "n")
    finally:
        del globals()["Point"]


def test_inheritance_post_init_and_own_methods() -> None:
    @struct(slots=True)
    class Base:
        a: int
        b: int = 1

    @struct(slots=True)
    class Child(Base):
        c: int = 2
        seen: list[int] = field(default_factory=list)

        def __post_init__(self) -> None:
            self.seen.append(self.a + self.b + self.c)

        def __repr__(self) -> str:
            return "<child>"

    child = Child(10)
    assert [f.name for f in fields_of(Child)] == ["a", "b", "c", "seen"]
    assert child.seen == [13] and repr(child) == "<child>"
    assert isinstance(child, Base) and Child(10) == Child(10, 1, 2, [])


def test_declaration_mistakes_are_refused_as_dataclasses_refuse_them() -> None:
    with pytest.raises(ValueError, match="mutable default list"):

        @struct
        class Bad:
            items: list[int] = []

    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @struct
        class Order:
            a: int = 0
            b: int

    with pytest.raises(ValueError, match="both a default and a default_factory"):
        field(default=1, default_factory=list)


def test_helpers_fields_as_dict_replace() -> None:
    @struct(frozen=True, slots=True)
    class Inner:
        v: int

    @struct(frozen=True)
    class Outer:
        name: str
        inner: Inner
        many: tuple[Inner, ...] = ()
        by: dict[str, Inner] = field(default_factory=dict)

    o = Outer("o", Inner(1), (Inner(2),), {"k": Inner(3)})
    assert as_dict(o) == {"name": "o", "inner": {"v": 1}, "many": ({"v": 2},), "by": {"k": {"v": 3}}}
    changed = replace(o, name="p")
    assert changed.name == "p" and changed.inner is o.inner and o.name == "o"
    with pytest.raises(TypeError, match="not a struct"):
        fields_of(object())


def test_init_is_compiled_on_first_use_then_runs_as_compiled_code() -> None:
    @struct(frozen=True, slots=True)
    class Lazy:
        a: int
        b: list[int] = field(default_factory=list)

    before = Lazy.__init__
    first = Lazy(1)
    assert Lazy.__init__ is not before  # replaced by the compiled one
    assert Lazy.__init__.__code__.co_filename.startswith("<struct ") and Lazy.__init__.__code__.co_filename.endswith(".Lazy>")
    assert (first.a, first.b, Lazy(2, [3]).b) == (1, [], [3])
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'a'"):
        Lazy()
