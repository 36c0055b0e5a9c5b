"""Text → ``RuleFile``: lark's LALR parser, then a walk that gives every word its meaning.

Everything that can be wrong with a rules file is found here, before any call is governed: syntax,
unknown fields, operators a field does not take, numbers that are not numbers, bad time ranges,
unknown time zones, and values a field can never hold (``phase IS comit``, ``day IN (funday)``,
``budget ABOVE 150%``): a condition that is silently never true is as wrong as an unknown field. Each
problem raises ``RuleSyntaxError`` with the file, line and column, and a message that names what was
expected. A file with one bad line loads nothing: half a policy is a policy nobody wrote.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import stat
import sys
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from corral.errors import RuleSyntaxError
from corral.governance.rules.grammar import GRAMMAR, KEYWORDS
from corral.governance.rules.nodes import (
    ALLOW,
    ANY,
    APPROVAL,
    BLOCK,
    COUNT,
    DAY,
    ENFORCE,
    ENUM,
    FLAG,
    MONEY,
    PERCENT,
    ROLES,
    SHADOW,
    TIME,
    And,
    Condition,
    Directive,
    Expr,
    Literal,
    Not,
    Or,
    Rule,
    RuleFile,
    Subject,
)
from corral.governance.rules.vocabulary import (  # noqa: F401 - the vocabulary, as this module's readers know it
    DAY_NAMES,
    DAYS,
    EFFECTS,
    FIELD_LIST,
    FIELDS,
    NUMERIC_OPS,
    OP_WORDS,
    OPERATORS,
    PHASES,
    collection_paused,
    is_glob,
)

__all__ = ["parse_rules"]

_OP_LIST = "IS, IS NOT, IN, NOT IN, ABOVE, BELOW, AT LEAST, AT MOST, MATCHES, CONTAINS, EXISTS, INSIDE, OUTSIDE"

# tree node -> (operator, negated)
_OPERATION_NODES: dict[str, tuple[str, bool]] = {
    "is_": ("is", False),
    "is_not": ("is", True),
    "in_": ("in", False),
    "not_in": ("in", True),
    "above": ("above", False),
    "below": ("below", False),
    "at_least": ("at_least", False),
    "at_most": ("at_most", False),
    "matches": ("matches", False),
    "contains": ("contains", False),
    "exists": ("exists", False),
    "not_exists": ("exists", True),
    "inside": ("inside", False),
    "outside": ("inside", True),
}

_ACTIONS = {"BLOCK": BLOCK, "ALLOW": ALLOW, "FLAG": FLAG, "REQUIRE": APPROVAL}

_NUMBER = re.compile(r"^(-)?(\$)?(\d+(?:\.\d*)?|\.\d+)(%)?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_WINDOW = re.compile(r"^(\d+)(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)$", re.IGNORECASE)
_WINDOW_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TARGET = re.compile(r"^[\w\-.:/*?\[\]!]+$")
_ARG_SEGMENT = re.compile(r"^[\w\-]+$")
_KEYWORD_TYPES = frozenset(KEYWORDS)
_MAX_DEPTH = 64


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """Built once per process, on first use: importing corral stays cheap. The built tables are cached
    on disk (``_grammar_cache``), so a short-lived process — the Claude Code hook runs one per tool
    call — loads them in ~2 ms instead of computing them in ~30 ms. A cache that cannot be read or
    written only makes it slower: lark then builds the parser, as it does without one."""
    options = {"parser": "lalr", "lexer": "contextual", "propagate_positions": True, "maybe_placeholders": False}
    cache = _grammar_cache()
    if cache is not None:
        try:
            return Lark(GRAMMAR, cache=cache, **options)
        except Exception:  # an unusable cache is not a policy problem: build without it
            pass
    return Lark(GRAMMAR, **options)


def _grammar_cache() -> str | None:
    """Where lark keeps the built parser: ``$XDG_CACHE_HOME/corral`` (else ``~/.cache/corral``), a
    directory this user owns and nobody else can write to — or None, and no cache.

    Not lark's ``cache=True``: that is a predictable name in the shared temp directory, and the cache is
    a pickle, so a file another user left there would run as whoever parses rules (lark-parser/lark#1628).
    """
    if not hasattr(os, "geteuid"):  # no owner to check (Windows): build in memory
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    directory = os.path.join(base, "corral")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    except OSError:  # a read-only or missing home: no cache
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        return None
    from lark import __version__ as lark_version

    key = hashlib.sha256(f"{GRAMMAR}\0{lark_version}\0{sys.version_info[:2]}".encode()).hexdigest()[:16]
    return os.path.join(directory, f"rules-parser-{key}.lark")


def parse_rules(
    text: str, source: str = "<rules>", line_offset: int = 0, *, mode: str | None = None
) -> RuleFile:
    """Parse a rules file, line by line (a rule never spans lines). Raises ``RuleSyntaxError`` (file,
    line, column, what was expected). ``line_offset`` lets the linter parse one line at a time and still
    report true line numbers. ``mode="shadow"`` makes the whole file shadow rules, as ``MODE SHADOW`` atop
    it would (the agent file's ``rules: [{file: new.rules, mode: shadow}]``)."""
    forced = mode
    if forced not in (None, SHADOW, ENFORCE):
        raise RuleSyntaxError(f"unknown mode {forced!r}: a rules file's mode is shadow or enforce", source=source,
                              line=1, column=1)
    if not isinstance(text, str):
        raise RuleSyntaxError(f"rules must be text, not {type(text).__name__}", source=source, line=1, column=1)
    directives: list[Directive] = []
    rules: list[Rule] = []
    zone: Directive | None = None
    declared: Directive | None = None  # the file's own MODE
    parser = _lark()
    with collection_paused(text.count("\n") > 200):
        for index, line in enumerate(text.split("\n")):
            if not strip_comment(line).strip():
                continue
            number = index + 1 + line_offset
            if "\x00" in line:
                raise RuleSyntaxError(
                    "a NUL character cannot appear in rules", source=source, line=number, column=line.index("\x00") + 1
                )
            try:
                tree = parser.parse(line)
            except UnexpectedInput as error:
                raise _syntax_error(error, line, source, number) from None
            except LarkError as error:  # anything else lark can raise is still a syntax problem
                raise RuleSyntaxError(str(error), source=source, line=number, column=1) from None
            builder = _Builder(line, source, number)
            item = tree.children[0]
            try:
                if item.data == "rule":
                    shadow_file = forced == SHADOW or (declared is not None and declared.value == SHADOW)
                    rules.append(builder.rule(item, shadow_file=shadow_file))
                    continue
                directive = builder.directive(item)
            except RecursionError:
                raise RuleSyntaxError(
                    "the expression is nested too deeply", source=source, line=number, column=1
                ) from None
            if directive.kind == "timezone":
                if zone is not None and zone.value != directive.value:
                    raise builder.error(
                        f"TIMEZONE {directive.value} conflicts with TIMEZONE {zone.value} on line "
                        f"{zone.line}; a policy has one time zone",
                        item,
                    )
                zone = zone or directive
            elif directive.kind == "mode":
                # the mode is the file's: a MODE after a rule would leave the rules above it ambiguous
                if rules:
                    raise builder.error(
                        f"MODE {directive.value.upper()} must come before the file's first rule "
                        f"(line {rules[0].line}): it applies to every rule in the file",
                        item,
                    )
                if forced == SHADOW and directive.value == ENFORCE:
                    raise builder.error(
                        "MODE ENFORCE conflicts with the mode this file is loaded in (shadow, from the agent "
                        "file's rules: entry)",
                        item,
                    )
                if declared is not None and declared.value != directive.value:
                    raise builder.error(
                        f"MODE {directive.value.upper()} conflicts with MODE {declared.value.upper()} on line "
                        f"{declared.line}; a file has one mode",
                        item,
                    )
                declared = declared or directive
            directives.append(directive)
    return RuleFile(source, tuple(directives), tuple(rules), forced)


# -- building nodes from the tree --------------------------------------------------------------------


class _Builder:
    """Turns one line's tree into nodes. Lark numbers the line 1; ``number`` is its place in the file."""

    def __init__(self, line: str, source: str, number: int) -> None:
        self.text = line
        self.source = source
        self.number = number

    def error(self, message: str, at: Token | Tree | None = None) -> RuleSyntaxError:
        column = self.position(at)[1] if at is not None else 1
        return RuleSyntaxError(message, source=self.source, line=self.number, column=column, text=self.text.strip())

    def position(self, at: Token | Tree) -> tuple[int, int]:
        if isinstance(at, Tree):
            return self.number, at.meta.column
        return self.number, at.column or 1

    def slice(self, start: Token | Tree, end: Token | Tree) -> str:
        column = start.meta.column if isinstance(start, Tree) else start.column
        end_column = end.meta.end_column if isinstance(end, Tree) else end.end_column
        return self.text[column - 1 : end_column - 1].strip()

    # -- lines --

    def directive(self, item: Tree) -> Directive:
        tokens = list(item.scan_values(lambda v: isinstance(v, Token)))
        text = self.slice(tokens[0], tokens[-1])
        canonical = _canonical(tokens)
        line, column = self.position(item)
        if item.data == "timezone":
            name = str(tokens[1])
            try:
                ZoneInfo(name)
            except Exception:
                raise self.error(
                    f'unknown time zone "{name}"; use an IANA name such as Europe/Berlin or UTC', tokens[1]
                ) from None
            return Directive("timezone", name, text, canonical, self.source, line, column)
        if item.data == "default":
            value = BLOCK if tokens[1].type == "BLOCK" else ALLOW
            return Directive("default", value, text, canonical, self.source, line, column)
        if item.data == "mode":
            word = str(tokens[1]).lower()
            if word not in (SHADOW, ENFORCE):
                close = difflib.get_close_matches(word, (SHADOW, ENFORCE), n=1)
                hint = f' (did you mean "{close[0].upper()}"?)' if close else ""
                raise self.error(
                    f'unknown mode "{tokens[1]}"{hint}; a file\'s MODE is SHADOW (evaluate and trace its rules, '
                    "never enforce them) or ENFORCE (the default)",
                    tokens[1],
                )
            canonical = f"MODE {word.upper()}"
            return Directive("mode", word, text, canonical, self.source, line, column)
        return Directive("require_plan", "", text, canonical, self.source, line, column)

    def rule(self, item: Tree, *, shadow_file: bool = False) -> Rule:
        parts = {child.data: child for child in item.children}
        shadow = shadow_file or "shadow" in parts
        first = parts["shadow"].children[0] if "shadow" in parts else parts["action"].children[0]
        action_tokens = parts["action"].children
        action = _ACTIONS[action_tokens[0].type]
        target_token = parts["target"].children[0]
        target = str(target_token)
        if not _TARGET.match(target):
            raise self.error(
                f'"{target}" is not a tool name or glob: use letters, digits, _ - . : / and the glob '
                "characters * ? [ ]",
                target_token,
            )
        when = self.expr(parts["when_clause"].children[1], 0) if "when_clause" in parts else None
        unless = self.expr(parts["unless_clause"].children[1], 0) if "unless_clause" in parts else None
        because = None
        last: Tree | Token = target_token
        for name in ("when_clause", "unless_clause"):
            if name in parts:
                last = parts[name]
        if "because_clause" in parts:
            because = _unquote(str(parts["because_clause"].children[1]))
        tokens = list(item.scan_values(lambda v: isinstance(v, Token)))
        line, column = self.position(item)
        return Rule(
            action=action,
            target=target,
            when=when,
            unless=unless,
            because=because,
            text=self.slice(first, last),
            canonical=_canonical(tokens),
            source=self.source,
            line=line,
            column=column,
            shadow=shadow,
        )

    # -- expressions --

    def expr(self, node: Tree, depth: int) -> Expr:
        if depth > _MAX_DEPTH:
            raise self.error(f"expression is nested more than {_MAX_DEPTH} levels deep", node)
        line, column = self.position(node)
        kind = node.data
        if kind == "condition":
            return self.condition(node)
        if kind == "group":
            return self.expr(node.children[1], depth + 1)
        if kind == "not_":
            return Not(self.expr(node.children[1], depth + 1), line, column)
        if kind in ("and_", "or_"):
            # flatten a chain (a AND b AND c) into one node; left recursion built it as a ladder
            items: list[Expr] = []
            stack = [node]
            flat: list[Tree] = []
            while stack:
                current = stack.pop()
                left, right = current.children[0], current.children[2]
                flat.append(right)
                if isinstance(left, Tree) and left.data == kind:
                    stack.append(left)
                else:
                    flat.append(left)
            for child in reversed(flat):
                items.append(self.expr(child, depth + 1))
            return And(tuple(items), line, column) if kind == "and_" else Or(tuple(items), line, column)
        raise self.error(f"unexpected {kind}", node)  # pragma: no cover - the grammar has no other node

    def condition(self, node: Tree) -> Condition:
        subject_node, operation = node.children
        subject = self.subject(subject_node)
        op, negated = _OPERATION_NODES[operation.data]
        op_token = operation.children[0]
        op_word = OP_WORDS[(op, negated)]

        # Shape's legacy form: "tool IS irreversible" means the tool's effect.
        if subject.field == "tool" and op == "is":
            value = operation.children[-1].children[0]
            if value.type == "WORD" and str(value).lower() in EFFECTS:
                subject = Subject("effect", ENUM, "effect", subject.line, subject.column)

        if op not in OPERATORS[subject.kind]:
            allowed = ", ".join(word for (name, _), word in OP_WORDS.items() if name in OPERATORS[subject.kind])
            raise self.error(f"{op_word} does not apply to {subject.label}; {subject.label} takes {allowed}", op_token)

        values: tuple[Literal, ...] = ()
        span = None
        if op in ("inside",):
            span = self.time_range(operation.children[-1])
        elif op == "in":
            value_list = operation.children[-1]
            values = tuple(self.literal(v.children[0], subject, op) for v in value_list.children if isinstance(v, Tree))
        elif op != "exists":
            values = (self.literal(operation.children[-1].children[0], subject, op),)

        return Condition(
            subject=subject,
            op=op,
            values=values,
            negated=negated,
            text=self.slice(node, node),
            line=subject.line,
            column=subject.column,
            span=span,
        )

    def subject(self, node: Tree) -> Subject:
        if node.data == "calls":
            return self.calls(node)
        token = node.children[0]
        word = str(token)
        lower = word.lower()
        line, column = self.position(token)
        if lower in FIELDS:
            return Subject(lower, FIELDS[lower], lower, line, column)
        if lower in ("principal.role", "principal.roles"):
            return Subject("role", ROLES, "principal.role", line, column)
        head, dot, rest = word.partition(".")
        if head.lower() in ("arg", "args"):
            path = tuple(rest.split(".")) if dot else ()
            if not path or not all(_ARG_SEGMENT.match(part) for part in path):
                raise self.error(f'"{word}" is not an argument; write arg.NAME (nested: arg.customer.tier)', token)
            return Subject("arg", ANY, "arg." + ".".join(path), line, column, path=path)
        hint = ""
        close = difflib.get_close_matches(lower, [*FIELDS, "principal.role", "calls"], n=1)
        if close:
            hint = f' (did you mean "{close[0]}"?)'
        elif re.match(r"^[A-Za-z_]\w*$", word):
            hint = f" (an argument is written arg.{word})"
        raise self.error(f'unknown field "{word}"{hint}; fields are {FIELD_LIST}', token)

    def calls(self, node: Tree) -> Subject:
        keyword = node.children[0]
        line, column = self.position(keyword)
        pattern = node.children[2].children[0]
        glob = _unquote(str(pattern)) if pattern.type == "STRING" else str(pattern)
        if not glob:
            raise self.error("calls() needs a tool name or glob, e.g. calls(send_*, 1h)", pattern)
        window = None
        label = f"calls({glob})"
        words = [c for c in node.children[3:] if isinstance(c, Token) and c.type == "WORD"]
        if words:
            match = _WINDOW.match(str(words[0]))
            if not match:
                raise self.error(f'"{words[0]}" is not a window; write a number and a unit: 30s, 10m, 1h, 1d', words[0])
            window = int(match.group(1)) * _WINDOW_SECONDS[match.group(2)[0].lower()]
            if window <= 0:
                raise self.error("a calls() window must be longer than zero", words[0])
            label = f"calls({glob}, {words[0]})"
        return Subject("calls", COUNT, label, line, column, glob=glob, window=window)

    # -- literals --

    def literal(self, token: Token, subject: Subject, op: str) -> Literal:
        quoted = token.type == "STRING"
        raw = _unquote(str(token)) if quoted else str(token)
        line, column = self.position(token)
        kind = subject.kind
        if op == "matches":
            return Literal(raw, quoted, line, column)
        if kind == TIME:
            minutes = None if quoted else _minutes(raw)
            if minutes is None or minutes >= 24 * 60:
                raise self.error(f'expected a time of day like 17:00 after {subject.label}, got "{raw}"', token)
            return Literal(raw, quoted, line, column, minutes=minutes)
        if kind in (PERCENT, MONEY, COUNT) or (kind == ANY and op in NUMERIC_OPS):
            number = None if quoted else _number(raw, kind)
            if number is None:
                raise self.error(self._number_message(subject, raw, op), token)
            if kind == PERCENT and not 0 <= number <= 100:
                raise self.error(
                    f"budget is the share of the budget used, from 0% to 100% (the stop gate ends the spending "
                    f'there): "{raw}" is never reached, so this condition could never be true',
                    token,
                )
            if kind == COUNT and number < 0:
                raise self.error(f'{subject.label} counts calls and is never below 0, got "{raw}"', token)
            return Literal(raw, quoted, line, column, number=number)
        if kind in (ENUM, DAY):
            value = raw.lower()
            self.check_domain(subject, value, raw, token)
            return Literal(value, quoted, line, column)
        if kind == ANY and not quoted:
            lower = raw.lower()
            boolean = True if lower == "true" else False if lower == "false" else None
            return Literal(raw, quoted, line, column, number=_number(raw, ANY), boolean=boolean)
        return Literal(raw, quoted, line, column)

    def check_domain(self, subject: Subject, value: str, raw: str, token: Token) -> None:
        """A phase, effect or day that does not exist can never be the call's: refuse it as an unknown
        field is refused, rather than compile a condition that is silently never (or always) true."""
        if subject.kind == DAY:
            if value in DAYS:
                return
            close = difflib.get_close_matches(value, list(DAYS), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise self.error(f'"{raw}" is not a day{hint}; days are {", ".join(DAY_NAMES)}', token)
        domain = PHASES if subject.field == "phase" else EFFECTS
        if value in domain:
            return
        close = difflib.get_close_matches(value, domain, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise self.error(
            f'unknown {subject.field} "{raw}"{hint}; {subject.field} is one of {", ".join(domain)}', token
        )

    def _number_message(self, subject: Subject, raw: str, op: str) -> str:
        kind = subject.kind
        if kind == PERCENT and "$" in raw:
            return f'budget is a percentage of the budget; write a percent like 90%, not "{raw}"'
        if kind == MONEY and raw.endswith("%"):
            return f'{subject.label} is an amount of money; write 5 or $5 (use budget for percentages), not "{raw}"'
        if kind == COUNT:
            return f'{subject.label} counts calls; expected a whole number like 50, got "{raw}"'
        if kind == ANY and raw.endswith("%"):
            return f'"%" is for budget only; compare {subject.label} with a plain number, not "{raw}"'
        word = OP_WORDS[(op, False)]
        return f'expected a number after {word}, got "{raw}"'

    def time_range(self, token: Token) -> tuple[int, int]:
        raw = str(token)
        start, dash, end = raw.partition("-")
        first, last = _minutes(start), _minutes(end)
        if not dash or first is None or last is None:
            raise self.error(f'expected a time range like 09:00-17:00, got "{raw}"', token)
        if first >= 24 * 60:
            raise self.error(f'a time range cannot start at 24:00, got "{raw}"', token)
        return first, min(last, 24 * 60 - 1)


def _minutes(text: str) -> int | None:
    """``HH:MM`` → minutes since midnight; ``24:00`` is allowed (as the end of a day)."""
    match = _TIME.match(text)
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        return None
    return hours * 60 + minutes


def _number(raw: str, kind: str) -> Decimal | None:
    """Literal numbers are Decimals, so ``0.1 + 0.2``-style drift never decides a rule.

    Budget is always a percentage: ``90%`` and ``90`` both mean ninety percent (and ``0.9`` means
    0.9 percent — the linter warns about it). ``$`` marks money and is refused on a percentage.
    """
    match = _NUMBER.match(raw)
    if not match:
        return None
    sign, dollar, digits, percent = match.groups()
    if percent and kind != PERCENT:
        return None
    if dollar and kind in (PERCENT, COUNT):
        return None
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the pattern only admits valid decimals
        return None
    return -value if sign else value


def _unquote(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r'\\(["\\])', r"\1", body)


def _canonical(tokens: list[Token]) -> str:
    return " ".join(str(t).upper() if t.type in _KEYWORD_TYPES else str(t) for t in tokens)



# -- syntax errors: lark's expected-token sets in words --------------------------------------------

_OPERATOR_START = frozenset({"IS", "IN", "ABOVE", "BELOW", "AT", "MATCHES", "CONTAINS", "EXISTS", "INSIDE", "OUTSIDE"})
_LINE_START = frozenset({"BLOCK", "ALLOW", "FLAG", "REQUIRE", "DEFAULT", "TIMEZONE"})
_END = frozenset({"_NL", "$END"})
_CODE = re.compile(r'^((?:[^"#]|"(?:[^"\\\n]|\\.)*"?)*)')
_PREVIOUS = re.compile(r'("(?:[^"\\]|\\.)*"|[(),]|[^\s#"(),]+)\s*$')

_TERMINAL_WORDS = {
    "LPAR": '"("',
    "RPAR": '")"',
    "COMMA": '","',
    "STRING": 'a quoted string ("…")',
    "_NL": "the end of the line",
    "$END": "the end of the line",
}


def _describe_expected(expected: set[str], previous: str) -> str:
    expected = {name for name in expected if name not in ("WS", "COMMENT")}
    prev = previous.upper()
    if expected | {"NOT"} >= _OPERATOR_START and "IS" in expected:
        return f"an operator ({_OP_LIST})"
    if expected >= _LINE_START:
        return (
            "a rule (BLOCK, ALLOW, FLAG, REQUIRE APPROVAL FOR), optionally after SHADOW, or a directive "
            "(TIMEZONE, DEFAULT, REQUIRE PLAN, MODE SHADOW)"
        )
    if expected == {"BLOCK", "ALLOW", "FLAG", "REQUIRE"}:
        return (
            "a rule's action (BLOCK, ALLOW, FLAG, REQUIRE APPROVAL FOR): SHADOW marks one rule; "
            "to trial a directive, put it in a MODE SHADOW file"
        )
    if expected == {"APPROVAL"} and prev == "REQUIRE":
        return (
            "APPROVAL FOR (SHADOW marks one rule; to trial REQUIRE PLAN or DEFAULT BLOCK, "
            "put it in a MODE SHADOW file)"
        )
    if "CALLS" in expected and "WORD" in expected:
        return f'a condition: a field ({FIELD_LIST}), NOT, or "("'
    if expected == {"LEAST", "MOST"}:
        return "LEAST or MOST (AT LEAST, AT MOST)"
    if expected == {"APPROVAL", "PLAN"}:
        return "APPROVAL FOR (a rule) or PLAN (the directive REQUIRE PLAN)"
    if expected == {"IN", "EXISTS"}:
        return "IN or EXISTS (NOT IN, NOT EXISTS)"
    if expected == {"WORD"}:
        if prev in ("BLOCK", "ALLOW", "FLAG", "FOR"):
            return "a tool name or glob (*, send_*, mcp.github.*)"
        if prev == "TIMEZONE":
            return "a time zone such as Europe/Berlin"
        if prev in ("INSIDE", "OUTSIDE"):
            return "a time range such as 09:00-17:00"
        if prev == ",":
            return "a window such as 30s, 10m, 1h or 1d"
        return "a word"
    if expected >= {"WORD", "STRING"}:
        extra = ", or NOT" if "NOT" in expected else ""
        return f"a value (a word, a number or a quoted string){extra}"
    if "BECAUSE" in expected and expected & _END:
        names = {"AND": "AND", "OR": "OR", "RPAR": '")"', "WHEN": "WHEN", "UNLESS": "UNLESS", "BECAUSE": "BECAUSE"}
        words = [word for name, word in names.items() if name in expected]
        return ", ".join(words) + " or the end of the line"
    names = []
    for name in sorted(expected, key=lambda n: (n in _END, KEYWORDS.index(n) if n in KEYWORDS else 99, n)):
        word = _TERMINAL_WORDS.get(name, name if name in KEYWORDS else "a word" if name == "WORD" else name)
        if word not in names:
            names.append(word)
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _accepted(error: UnexpectedToken) -> set[str]:
    """What the parser would really accept here. LALR merges look-aheads across contexts, so
    ``error.expected`` can list tokens that are wrong in this place; the interactive parser replays
    each candidate and keeps only those that fit."""
    try:
        accepted = set(error.interactive_parser.accepts())
    except Exception:
        accepted = set(error.expected)
    if "OR" in accepted:  # wherever OR may follow a condition, AND may too (LALR reduced past it)
        accepted.add("AND")
    return accepted


def _syntax_error(error: UnexpectedInput, text: str, source: str, number: int) -> RuleSyntaxError:
    """Lark's error on one line, in words: what was expected, after which word, and what came."""
    column = getattr(error, "column", None) or 1
    if isinstance(error, UnexpectedToken) and error.token.type in _END:
        column = len(strip_comment(text).rstrip()) + 1  # just after the last word
    column = max(1, min(column, len(text) + 1))
    match = _PREVIOUS.search(strip_comment(text[: column - 1]))
    previous = match.group(1) if match else ""
    after = f' after "{previous}"' if previous else " at the start of the line"

    if isinstance(error, UnexpectedToken):
        token = error.token
        got = "the end of the line" if token.type in _END else f'"{token}"'
        message = f"expected {_describe_expected(_accepted(error), previous)}{after}, got {got}"
    elif isinstance(error, UnexpectedCharacters):
        char = text[column - 1] if column <= len(text) else ""
        if char == '"':
            message = 'unterminated string: a quoted value must end with " on the same line'
        else:
            allowed = set(error.allowed or ())
            described = _describe_expected(allowed, previous) if allowed else "something else"
            message = f'unexpected "{char}"{after}; expected {described}'
    else:  # UnexpectedEOF and friends
        expected = set(getattr(error, "expected", ()) or ())
        message = f"unexpected end of the line; expected {_describe_expected(expected, previous)}"
    return RuleSyntaxError(message, source=source, line=number, column=column, text=text.strip())


def strip_comment(line: str) -> str:
    """The line without its ``#`` comment; a ``#`` inside a quoted string is not a comment."""
    match = _CODE.match(line)
    return match.group(1) if match else line
