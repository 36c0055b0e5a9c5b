"""Policy tests: ``corral rules test FILE.rules TESTS.yaml`` (DESIGN §14).

Nobody should change a policy without tests, and a policy's tests should read like the policy: a YAML
list of cases, each a call and what the rules must decide about it::

    - name: a small refund just runs
      call: {tool: issue_refund, args: {amount: 20}, effect: reversible, phase: commit}
      expect: allowed
    - name: a big refund needs a human
      call: {tool: issue_refund, args: {amount: 250}, effect: reversible, phase: commit,
             principal: {name: alice, roles: [agent]}, budget: "80%", time: "10:00", day: tue,
             calls: {"send_*": 3}, labels: [pii]}
      expect: approval            # allowed | flagged | approval | blocked
      rule: refunds.rules:4       # optional: the rule that decides
      shadow: blocked             # optional: what the shadow rules would decide

A case is decided by the rules alone, as ``Policy.decide`` decides it in the kernel: the kernel's own
checks (phases, plans, budget gates) are configuration, not policy, and are not part of it. What the
case leaves out has a documented default (``effect: irreversible`` — what corral assumes of a tool
that declares none —, ``phase: explore``, no principal, ``time: "12:00"``, ``day: tue``, no budget).

Everything wrong in a tests file is a ``CasebookError`` naming the file, line and column, the case
(its number and name) and the field, never a traceback. The report lists every case with what it got,
then the rules no case exercised (matched by no case), so a policy's untested corners show.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from corral.errors import RuleSyntaxError
from corral.governance.rules.compiler import Policy, RuleOutcome, decide, shadow_verdict
from corral.governance.rules.parser import DAY_NAMES, DAYS, EFFECTS, PHASES
from corral.struct import field, struct

__all__ = [
    "EXPECTATIONS",
    "Case",
    "CaseFacts",
    "CaseResult",
    "CasebookError",
    "CasebookReport",
    "load_cases",
    "run_casebook",
    "run_cases",
]

EXPECTATIONS = ("allowed", "flagged", "approval", "blocked")
# the rules' vocabulary → the tests file's (``approval_required`` is accepted as written, too)
_AS_EXPECTED = {"allowed": "allowed", "flagged": "flagged", "approval_required": "approval", "blocked": "blocked"}

_CASE_KEYS = ("name", "call", "expect", "rule", "shadow")
_CALL_KEYS = (
    "tool", "args", "effect", "phase", "principal", "roles", "agent", "budget", "spent", "remaining", "cost",
    "time", "day", "calls", "labels", "tags",
)
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_MONEY = re.compile(r"^\$?(\d+(?:\.\d*)?|\.\d+)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*%?$")
_RULE_REF = re.compile(r"^(?:(.+):)?(\d+)$")
_MONDAY = datetime(2026, 11, 23)  # any Monday: a case's day picks the date of its week


class CasebookError(ValueError):
    """A tests file that is wrong: ``file:line:column``, the case and the field, and what to write."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        line: int = 1,
        column: int = 1,
        case: int | None = None,
        name: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        self.case = case
        self.name = name
        self.field = field
        where = ""
        if case is not None:
            where = f"case {case}" + (f" ({name!r})" if name else "")
        if field:
            where = f"{where}, {field}" if where else field
        super().__init__(f"{source}:{line}:{column}: " + (f"{where}: " if where else "") + message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "case": self.case,
            "name": self.name,
            "field": self.field,
            "message": self.message,
        }


# -- reading YAML with positions ----------------------------------------------------------------------


class _Mapping(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers where it, each value and each scalar's text stand."""

    mark: tuple[int, int] = (1, 1)
    marks: dict[Any, tuple[int, int]]
    raw: dict[Any, str]


class _Sequence(list):  # type: ignore[type-arg]
    mark: tuple[int, int] = (1, 1)
    marks: list[tuple[int, int]]


def _position(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    out = _Mapping()
    out.mark = _position(node.start_mark)
    out.marks, out.raw = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain word or number", key_node.start_mark
            ) from None
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.marks[key] = _position(value_node.start_mark)
        if isinstance(value_node, yaml.ScalarNode):
            out.raw[key] = value_node.value  # "10:00" as written: YAML 1.1 would read it as 600
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _Sequence:
    out = _Sequence(loader.construct_object(item, deep=True) for item in node.value)
    out.mark = _position(node.start_mark)
    out.marks = [_position(item.start_mark) for item in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader, plus two constructors that keep positions
    except yaml.MarkedYAMLError as error:
        line, column = _position(error.problem_mark or error.context_mark)
        problem = error.problem or error.context or "not valid YAML"
        raise CasebookError(f"not valid YAML: {problem}", source=source, line=line, column=column) from None
    except yaml.YAMLError as error:
        raise CasebookError(f"not valid YAML: {error}", source=source) from None
    except RecursionError:
        raise CasebookError("not valid YAML: nested too deeply", source=source) from None


# -- the cases ----------------------------------------------------------------------------------------


class CaseFacts:
    """A case's call as the rules see it (``RuleFacts``): built once when the file is read."""

    __slots__ = (
        "agent", "args", "budget_pct", "call_log", "cost", "effect", "labels", "now", "phase", "principal",
        "remaining", "roles", "spent", "tags", "tool",
    )

    def __init__(self, **values: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, values[name])


@struct(frozen=True)
class Case:
    number: int  # 1-based, in file order
    name: str
    line: int
    facts: CaseFacts
    expect: str  # allowed | flagged | approval | blocked
    rule: tuple[str | None, int] | None = None  # (file name or None, line): the deciding rule
    rule_text: str | None = None  # as written in the tests file
    shadow: str | None = None  # the shadow decision expected


@struct
class CaseResult:
    case: Case
    got: str
    deciding: list[str]  # sources of the rules that decided, in source order
    reason: str
    shadow: str | None  # the shadow decision, when shadow rules bear on the call
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "line": self.case.line,
            "expect": self.case.expect,
            "got": self.got,
            "rule": self.case.rule_text,
            "deciding": list(self.deciding),
            "reason": self.reason,
            "shadow": self.shadow,
            "expect_shadow": self.case.shadow,
            "passed": self.passed,
            "problems": list(self.problems),
        }


@struct
class CasebookReport:
    rules: list[str]  # the rules files, as given
    tests: str
    results: list[CaseResult]
    unexercised: list[tuple[str, str]]  # (source, text) of rules no case matched, in file order
    total_rules: int

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": list(self.rules),
            "tests": self.tests,
            "passed": self.passed,
            "failed": self.failed,
            "cases": [result.to_dict() for result in self.results],
            "unexercised": [{"source": source, "rule": text} for source, text in self.unexercised],
        }

    def lines(self) -> list[str]:
        """The report as plain text: one line per case, then the rules no case exercised."""
        out = []
        for result in self.results:
            mark = "PASS" if result.passed else "FAIL"
            deciding = ", ".join(result.deciding) or "-"
            line = f"{mark}  {result.case.name}: {result.got} ({deciding})"
            if result.problems:
                line += " — " + "; ".join(result.problems)
            out.append(line)
        if self.unexercised:
            out.append(f"Rules no case exercised ({len(self.unexercised)} of {self.total_rules}):")
            out.extend(f"  {source}  {text}" for source, text in self.unexercised)
        out.append(self.summary())
        return out

    def summary(self) -> str:
        cases = len(self.results)
        text = f"{cases} case{'s' if cases != 1 else ''}: {self.passed} passed, {self.failed} failed"
        exercised = self.total_rules - len(self.unexercised)
        return text + f"; {exercised} of {self.total_rules} rule{'s' if self.total_rules != 1 else ''} exercised"


def load_cases(text: str, source: str, policy: Policy) -> list[Case]:
    """Read a tests file. Raises ``CasebookError`` (file, line, column, case, field) for anything wrong —
    including a ``rule:`` that names no rule of ``policy``."""
    document = _load_yaml(text, source)
    if document is None:
        raise CasebookError("the file has no cases; write a YAML list of cases (- name: …, call: …, expect: …)",
                            source=source)
    if isinstance(document, _Mapping) and set(document) == {"cases"}:
        document = document["cases"]
    if not isinstance(document, _Sequence):
        raise CasebookError(
            f"expected a YAML list of cases (- name: …, call: …, expect: …), found {_kind(document)}", source=source
        )
    cases = []
    for index, item in enumerate(document):
        line, column = document.marks[index]
        cases.append(_Reader(source, index + 1, line, column, policy).case(item))
    return cases


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


class _Reader:
    """Reads one case, raising errors that say where."""

    def __init__(self, source: str, number: int, line: int, column: int, policy: Policy) -> None:
        self.source = source
        self.number = number
        self.line = line
        self.column = column
        self.name: str | None = None
        self.policy = policy

    def error(self, message: str, where: tuple[int, int] | None = None, field: str | None = None) -> CasebookError:
        line, column = where or (self.line, self.column)
        return CasebookError(
            message, source=self.source, line=line, column=column, case=self.number, name=self.name, field=field
        )

    def keys(self, mapping: _Mapping, allowed: Sequence[str], prefix: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            close = _suggest(str(key), allowed)
            hint = f' (did you mean "{close}"?)' if close else ""
            raise self.error(
                f"unknown field{hint}; a {prefix or 'case'} has {', '.join(allowed)}",
                mapping.marks[key],
                f"{prefix}.{key}" if prefix else str(key),
            )

    def case(self, item: Any) -> Case:
        if not isinstance(item, _Mapping):
            raise self.error(f"a case is a mapping with name, call and expect, found {_kind(item)}")
        self.line, self.column = item.mark
        name = item.get("name")
        if name is not None and not isinstance(name, str | int | float):
            raise self.error("a case's name is text", item.marks["name"], "name")
        self.name = str(name) if name is not None else None
        self.keys(item, _CASE_KEYS, "")
        if "call" not in item:
            raise self.error("missing call: the tool call to decide, e.g. call: {tool: send_email}", field="call")
        if "expect" not in item:
            raise self.error(f"missing expect: one of {', '.join(EXPECTATIONS)}", field="expect")
        facts = self.call(item["call"], item.marks["call"])
        expect = self.decision(item, "expect")
        shadow = self.decision(item, "shadow") if item.get("shadow") is not None else None
        rule, rule_text = self.rule(item) if item.get("rule") is not None else (None, None)
        return Case(self.number, self.name or f"case {self.number}", self.line, facts, expect, rule, rule_text, shadow)

    def decision(self, item: _Mapping, key: str) -> str:
        value = item[key]
        word = value.lower().strip() if isinstance(value, str) else value
        if word == "approval_required":
            word = "approval"
        if word not in EXPECTATIONS:
            raise self.error(f"expected one of {', '.join(EXPECTATIONS)}, got {value!r}", item.marks[key], key)
        return word

    def rule(self, item: _Mapping) -> tuple[tuple[str | None, int], str]:
        value = item["rule"]
        text = str(value).strip()
        match = _RULE_REF.match(text) if isinstance(value, str | int) and not isinstance(value, bool) else None
        if match is None:
            raise self.error(
                f"expected the deciding rule as FILE:LINE (refunds.rules:4) or a line number, got {value!r}",
                item.marks["rule"],
                "rule",
            )
        file, line = match.group(1), int(match.group(2))
        if not any(_same_rule(compiled.source, file, line) for compiled in self.policy.rules):
            where = ", ".join(compiled.source for compiled in self.policy.rules[:12]) or "none"
            raise self.error(f"no rule at {text}; the rules are at {where}", item.marks["rule"], "rule")
        return (file, line), text

    def call(self, call: Any, where: tuple[int, int]) -> CaseFacts:
        if not isinstance(call, _Mapping):
            raise self.error(f"a call is a mapping with at least tool, found {_kind(call)}", where, "call")
        self.keys(call, _CALL_KEYS, "call")
        tool = call.get("tool")
        if not isinstance(tool, str) or not tool.strip():
            raise self.error("the tool's name is required, e.g. tool: send_email", call.marks.get("tool", where),
                             "call.tool")
        args = call.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise self.error(f"args is a mapping of argument names to values, found {_kind(args)}",
                             call.marks["args"], "call.args")
        effect = self.word(call, "effect", EFFECTS, "irreversible")
        phase = self.word(call, "phase", PHASES, "explore")
        principal, roles = self.principal(call)
        agent = call.get("agent")
        if agent is not None and not isinstance(agent, str):
            raise self.error("agent is a name", call.marks["agent"], "call.agent")
        budget = self.percent(call)
        spent = self.money(call, "spent") or Decimal(0)
        remaining = self.money(call, "remaining")
        cost = self.money(call, "cost") or Decimal(0)
        now = self.now(call)
        return CaseFacts(
            tool=tool.strip(),
            effect=effect,
            phase=phase,
            args=_plain(args),
            principal=principal,
            roles=roles,
            agent=agent,
            budget_pct=budget,
            spent=spent,
            remaining=remaining,
            cost=cost,
            now=now,
            call_log=self.calls(call, now),
            labels=self.words(call, "labels"),
            tags=self.words(call, "tags"),
        )

    def word(self, call: _Mapping, key: str, allowed: Sequence[str], default: str) -> str:
        if key not in call:
            return default
        value = call[key]
        word = value.lower().strip() if isinstance(value, str) else None
        if word not in allowed:
            close = _suggest(str(value).lower(), allowed)
            hint = f' (did you mean "{close}"?)' if close else ""
            raise self.error(f"expected one of {', '.join(allowed)}, got {value!r}{hint}", call.marks[key],
                             f"call.{key}")
        return word

    def principal(self, call: _Mapping) -> tuple[str | None, tuple[str, ...]]:
        value = call.get("principal")
        roles: Any = call.get("roles", [])
        name = None
        if isinstance(value, _Mapping):
            self.keys(value, ("name", "roles"), "call.principal")
            name = value.get("name")
            if "roles" in value:
                if "roles" in call:
                    raise self.error("roles are given twice: in call.roles and in call.principal.roles",
                                     value.marks["roles"], "call.principal.roles")
                roles = value["roles"]
                where, field_name = value.marks["roles"], "call.principal.roles"
            else:
                where, field_name = call.marks.get("roles", value.mark), "call.roles"
        else:
            name = value
            where, field_name = call.marks.get("roles", call.mark), "call.roles"
        if name is not None and not isinstance(name, str):
            raise self.error("a principal is a name, or {name, roles}", call.marks["principal"], "call.principal")
        if isinstance(roles, str):
            roles = [roles]
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise self.error(f"roles are a list of names, found {_kind(roles)}", where, field_name)
        return name, tuple(roles)

    def percent(self, call: _Mapping) -> float:
        if "budget" not in call:
            return 0.0
        value = call["budget"]
        text = str(value).strip() if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
        match = _PERCENT.match(text)
        number = float(match.group(1)) if match else -1.0
        if not 0 <= number <= 100:
            raise self.error(f'expected a percentage of the budget used, like "80%", got {value!r}',
                             call.marks["budget"], "call.budget")
        return number

    def money(self, call: _Mapping, key: str) -> Decimal | None:
        if key not in call:
            return None
        value = call[key]
        text = str(value).strip() if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
        match = _MONEY.match(text)
        if match is None:
            raise self.error(f'expected an amount of money, like 5 or "$5", got {value!r}', call.marks[key],
                             f"call.{key}")
        return Decimal(match.group(1))

    def now(self, call: _Mapping) -> datetime:
        day = DAYS["tue"]
        if "day" in call:
            value = call["day"]
            word = value.lower().strip() if isinstance(value, str) else None
            if word not in DAYS:
                raise self.error(f"expected a day ({', '.join(DAY_NAMES)}), got {value!r}", call.marks["day"],
                                 "call.day")
            day = DAYS[word]
        minutes = 12 * 60
        if "time" in call:
            raw = call.raw.get("time")
            match = _TIME.match(raw.strip()) if isinstance(raw, str) else None
            hours, mins = (int(match.group(1)), int(match.group(2))) if match else (99, 99)
            if hours > 23 or mins > 59:
                raise self.error(f'expected a time of day like "10:00", got {call["time"]!r}', call.marks["time"],
                                 "call.time")
            minutes = hours * 60 + mins
        local = _MONDAY + timedelta(days=day, minutes=minutes)
        return local.replace(tzinfo=self.policy.timezone)

    def calls(self, call: _Mapping, now: datetime) -> list[tuple[str, datetime]]:
        """``{"send_*": 3}``: the session has already run 3 calls of a tool named so (a key may be a tool
        name or a rule's glob as written); all of them just now, so every ``calls()`` window counts them."""
        value = call.get("calls")
        if value is None:
            return []
        if not isinstance(value, _Mapping):
            raise self.error('calls maps tool names to counts, e.g. calls: {"send_*": 3}', call.marks["calls"],
                             "call.calls")
        log: list[tuple[str, datetime]] = []
        for key, count in value.items():
            if not isinstance(key, str) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise self.error(f"expected a tool name and a whole number of calls ≥ 0, got {key!r}: {count!r}",
                                 value.marks[key], f"call.calls.{key}")
            if count > 100_000:
                raise self.error(f"{count} calls is more than a test needs (at most 100000)", value.marks[key],
                                 f"call.calls.{key}")
            log.extend((key, now) for _ in range(count))
        return log

    def words(self, call: _Mapping, key: str) -> frozenset[str]:
        value = call.get(key)
        if value is None:
            return frozenset()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise self.error(f"{key} are a list of words, e.g. {key}: [pii]", call.marks[key], f"call.{key}")
        return frozenset(item.strip() for item in value)


def _suggest(word: str, options: Sequence[str]) -> str | None:
    """The option a typo most likely meant: the same letters swapped first (agrs → args), then the
    closest spelling."""
    lower = word.lower()
    for option in options:
        if sorted(option) == sorted(lower):
            return option
    close = difflib.get_close_matches(lower, options, n=1)
    return close[0] if close else None


def _plain(value: Any) -> Any:
    """YAML's position-keeping containers → plain dicts and lists, as a tool would receive them."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _same_rule(source: str, file: str | None, line: int) -> bool:
    """Whether a rule at ``source`` (``path:line``) is the one a case names: by line, and by file name
    when given (``refunds.rules:4`` names the rule whatever directory the file was loaded from)."""
    path, _, number = source.rpartition(":")
    if number != str(line):
        return False
    if file is None:
        return True
    return path == file or os.path.basename(path) == os.path.basename(file)


# -- running ------------------------------------------------------------------------------------------


def run_cases(policy: Policy, cases: Iterable[Case], rules: Sequence[str] = (), tests: str = "") -> CasebookReport:
    """Decide every case with the rules alone and compare; then the rules no case matched."""
    exercised: set[str] = set()
    results = []
    for case in cases:
        outcomes = policy.evaluate(case.facts)
        exercised.update(outcome.source for outcome in outcomes if outcome.matched)
        results.append(_judge(policy, case, outcomes))
    unexercised = [(rule.source, rule.text) for rule in policy.rules if rule.source not in exercised]
    return CasebookReport(list(rules), tests, results, unexercised, len(policy.rules))


def _judge(policy: Policy, case: Case, outcomes: list[RuleOutcome]) -> CaseResult:
    verdict = decide(outcomes, policy.default, case.facts.tool)
    got = _AS_EXPECTED[verdict.decision]
    deciding = [outcome.source for outcome in verdict.deciding]
    shadow = None
    if policy.has_shadow:
        found = shadow_verdict(outcomes, policy, case.facts.tool)
        shadow = _AS_EXPECTED[found.decision] if found is not None else None
    result = CaseResult(case, got, deciding, verdict.reason, shadow)
    if got != case.expect:
        result.problems.append(f"expected {case.expect}, got {got}: {verdict.reason}")
    if case.rule is not None:
        file, line = case.rule
        if not any(_same_rule(source, file, line) for source in deciding):
            decided = ", ".join(deciding) if deciding else ("DEFAULT BLOCK" if got == "blocked" else "no rule")
            result.problems.append(f"expected {case.rule_text} to decide, decided by {decided}")
    if case.shadow is not None and (shadow or got) != case.shadow:
        result.problems.append(f"expected the shadow decision {case.shadow}, got {shadow or got}")
    return result


def run_casebook(rules: Sequence[str | Path], tests: str | Path) -> CasebookReport:
    """``corral rules test``: load the rules files as one policy and the tests file, run every case.

    Raises ``RuleSyntaxError`` for a bad rules file and ``CasebookError`` for a bad tests file (an
    unreadable one included) — each located — before any case runs.
    """
    sources = []
    for path in rules:
        try:
            sources.append((Path(path).read_text(encoding="utf-8"), str(path)))
        except (OSError, UnicodeDecodeError) as error:
            raise RuleSyntaxError(f"cannot read the rules file: {error}", source=str(path), line=1, column=1) from None
    policy = Policy.from_sources(sources)
    try:
        text = Path(tests).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CasebookError(f"cannot read the tests file: {error}", source=str(tests)) from None
    cases = load_cases(text, str(tests), policy)
    return run_cases(policy, cases, [str(path) for path in rules], str(tests))
