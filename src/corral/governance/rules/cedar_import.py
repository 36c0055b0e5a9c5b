"""Cedar policies → corral rules: ``corral rules import FILE.cedar`` (DESIGN §14, Portability).

The reverse of ``cedar.export_cedar``, over the part of Cedar that corral's rules can say exactly:
``permit`` / ``forbid`` with ``when`` / ``unless`` over the principal (``User::"…"`` with ``Role::"…"``
parents), the action (``Action::"TOOL"``), the resource (``Agent::"…"``) and the context attributes an
export reads: ``phase``, ``effect``, ``tool`` and ``args`` (compared with ``==``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, ``decimal`` comparisons, ``like``, ``has``, ``in``, ``.contains``, ``&&``, ``||``, ``!``).

- ``forbid`` is BLOCK; ``permit`` is ALLOW, or FLAG / REQUIRE APPROVAL FOR when annotated
  ``@corral("flag")`` / ``@corral("approval")``. ``@reason("…")`` becomes BECAUSE.
- Cedar denies what no permit allows, so the rules say ``DEFAULT BLOCK`` — unless the file holds an
  unconditional ``permit (principal, action, resource);``, which is ``DEFAULT ALLOW``.
- A Cedar policy whose condition errors is skipped, where corral fails closed; so, as Cedar's validator
  demands for optional attributes, every ``context.args.X`` must be read behind ``context.args has X``
  in the same conjunction. Then both decide alike.
- ``like`` on an argument is imported only when its pattern has no letters (corral's MATCHES ignores
  case, Cedar's ``like`` does not); ``context.tool like "send_*"`` at the top of a condition becomes the
  rule's target glob.

Anything else — another entity type, ``if``, arithmetic, ``is``, attributes of entities, extension
functions other than ``decimal`` — is a ``CedarImportError`` with the file, line and column, never a
rule that means something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from corral.errors import RuleSyntaxError
from corral.governance.rules.parser import EFFECTS, PHASES, parse_rules
from corral.struct import field, struct

__all__ = ["CedarImportError", "import_cedar"]

_GRAMMAR = r"""
start: policy*
policy: annotation* EFFECT "(" principal_scope "," action_scope "," resource_scope ")" condition* ";"
annotation: "@" NAME ["(" STRING ")"]
EFFECT: "permit" | "forbid"
principal_scope: PRINCIPAL [scope_constraint]
resource_scope: RESOURCE [scope_constraint]
scope_constraint: EQ entity            -> scope_eq
                | IN entity            -> scope_in
                | IS path [IN entity]  -> scope_is
action_scope: ACTION [action_constraint]
action_constraint: EQ entity                     -> action_eq
                 | IN entity                     -> action_in
                 | IN "[" entity ("," entity)* "]" -> action_in_list
condition: (WHEN | UNLESS) "{" [expr] "}"

?expr: or_expr
     | IF expr THEN expr ELSE expr         -> if_
?or_expr: and_expr | or_expr "||" and_expr -> or_
?and_expr: relation | and_expr "&&" relation -> and_
?relation: add
         | add RELOP add                   -> compare
         | add IN add                      -> in_
         | add HAS (NAME | STRING)         -> has
         | add LIKE STRING                 -> like
         | add IS path [IN add]            -> is_
?add: mult | add ADDOP mult                -> arith
?mult: unary | mult "*" unary              -> arith
?unary: member
      | "!" unary                          -> not_
      | "-" unary                          -> neg
?member: primary
       | member "." NAME                   -> attr
       | member "." NAME "(" [exprs] ")"   -> method
       | member "[" STRING "]"             -> index
?primary: INT                              -> long
        | STRING                           -> string
        | TRUE                             -> true
        | FALSE                            -> false
        | entity
        | path "(" [exprs] ")"             -> call
        | PRINCIPAL                        -> var
        | ACTION                           -> var
        | RESOURCE                         -> var
        | CONTEXT                          -> var
        | "(" expr ")"
        | "[" [exprs] "]"                  -> set
        | "{" [record] "}"                 -> record
exprs: expr ("," expr)*
record: (NAME | STRING) ":" expr ("," (NAME | STRING) ":" expr)*
entity: ENTITY_TYPE STRING
path: NAME

PRINCIPAL: "principal"
ACTION: "action"
RESOURCE: "resource"
CONTEXT: "context"
WHEN: "when"
UNLESS: "unless"
IF: "if"
THEN: "then"
ELSE: "else"
IN: "in"
HAS: "has"
LIKE: "like"
IS: "is"
TRUE: "true"
FALSE: "false"
EQ: "=="
RELOP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADDOP: "+" | "-"
ENTITY_TYPE.2: /[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*::/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
INT: /[0-9]+/
STRING: /"(?:[^"\\]|\\.)*"/
COMMENT: /\/\/[^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
"""

_RELOPS = {"<": "BELOW", "<=": "AT MOST", ">": "ABOVE", ">=": "AT LEAST"}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_DECIMAL_METHODS = {"lessThan": "BELOW", "lessThanOrEqual": "AT MOST", "greaterThan": "ABOVE",
                    "greaterThanOrEqual": "AT LEAST"}
_WORD = re.compile(r"^[A-Za-z_][\w\-.:/]*$")
_RULE_KEYWORDS = frozenset({"when", "unless", "because", "and", "or", "not", "is", "in"})


class CedarImportError(ValueError):
    """A Cedar file corral cannot import: ``file:line:column`` and what is not supported there."""

    def __init__(self, message: str, *, source: str, line: int, column: int) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(f"{source}:{line}:{column}: {message}")


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


# -- the corral side: conditions as text ---------------------------------------------------------------


@struct
class _Rule:
    action: str  # BLOCK, ALLOW, FLAG, REQUIRE APPROVAL FOR
    targets: list[str]
    conditions: list[str] = field(default_factory=list)
    because: str | None = None
    line: int = 1
    name: str | None = None


def _word(value: str) -> str:
    """A value as a rule writes it: a bare word when it reads back as the same word, else quoted."""
    if _WORD.match(value) and value.lower() not in _RULE_KEYWORDS and value.lower() not in ("true", "false"):
        return value
    return _quoted(value)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unescape(token: str, at: Any, source: str) -> str:
    """A Cedar string literal's value (Cedar's escapes: \\n \\r \\t \\\\ \\0 \\' \\" \\* \\u{…})."""
    body, out, index = token[1:-1], [], 0
    simple = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "0": "\0", "'": "'", '"': '"', "*": "\\*"}
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        nxt = body[index + 1] if index + 1 < len(body) else ""
        if nxt in simple:
            out.append(simple[nxt])
            index += 2
        elif nxt == "u" and body[index + 2 : index + 3] == "{":
            end = body.find("}", index)
            try:
                out.append(chr(int(body[index + 3 : end], 16)))
            except (ValueError, OverflowError):
                raise _error(f"bad escape in string {token}", at, source) from None
            index = end + 1
        else:
            raise _error(f"bad escape \\{nxt} in string {token}", at, source)
    return "".join(out)


def _error(message: str, at: Any, source: str) -> CedarImportError:
    if isinstance(at, Tree) and getattr(at.meta, "line", None) is not None:
        return CedarImportError(message, source=source, line=at.meta.line, column=at.meta.column)
    if isinstance(at, Token) and at.line is not None:
        return CedarImportError(message, source=source, line=at.line, column=at.column or 1)
    return CedarImportError(message, source=source, line=1, column=1)


# -- translation ----------------------------------------------------------------------------------------


class _Importer:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, message: str, at: Any) -> CedarImportError:
        return _error(message, at, self.source)

    def string(self, token: Token) -> str:
        return _unescape(str(token), token, self.source)

    # -- policies --

    def policy(self, tree: Tree) -> _Rule | None:
        """One policy as a rule; None for an unconditional permit (DEFAULT ALLOW)."""
        children = list(tree.children)
        annotations: dict[str, str] = {}
        while children and isinstance(children[0], Tree) and children[0].data == "annotation":
            name, value = children.pop(0).children
            annotations[str(name)] = self.string(value) if value is not None else ""
        effect, principal, action, resource, *conditions = children
        kind = annotations.get("corral", "")
        if str(effect) == "forbid":
            if kind not in ("", "block"):
                raise self.error(f'@corral("{kind}") on a forbid: a forbid is a BLOCK', tree)
            verb = "BLOCK"
        else:
            verb = {"": "ALLOW", "allow": "ALLOW", "default": "ALLOW", "flag": "FLAG",
                    "approval": "REQUIRE APPROVAL FOR"}.get(kind)
            if verb is None:
                raise self.error(f'unknown @corral("{kind}"): use flag or approval on a permit', tree)
        rule = _Rule(verb, ["*"], because=annotations.get("reason") or None, line=tree.meta.line,
                     name=annotations.get("id"))
        self.scope(rule, principal, "principal")
        self.action_scope(rule, action)
        self.scope(rule, resource, "resource")
        for condition in conditions:
            keyword, body = condition.children
            if body is None:
                continue
            if str(keyword) == "when" and rule.targets == ["*"]:
                body = self.target_from(rule, body)
                if body is None:
                    continue
            text = self.expr(body, frozenset())
            rule.conditions.append(text if str(keyword) == "when" else f"NOT ({text})")
        if verb == "ALLOW" and not rule.conditions and rule.targets == ["*"]:
            return None
        return rule

    def scope(self, rule: _Rule, tree: Tree, var: str) -> None:
        constraint = tree.children[1] if len(tree.children) > 1 else None
        if constraint is None:
            return
        if constraint.data == "scope_is":
            raise self.error(f"{var} is …: corral has one principal type (User) and one resource type (Agent)",
                             constraint)
        entity_type, name = self.entity(constraint.children[1])
        if var == "principal":
            if entity_type == "User":
                rule.conditions.append(f"principal IS {_word(name)}")
            elif entity_type == "Role" and constraint.data == "scope_in":
                rule.conditions.append(f"principal.role IS {_word(name)}")
            else:
                raise self.error(f"principal {'==' if constraint.data == 'scope_eq' else 'in'} {entity_type}::…: "
                                 "a principal is a User, with Role parents", constraint)
        else:
            if entity_type != "Agent" or constraint.data != "scope_eq":
                raise self.error('the resource is the agent: write resource == Agent::"NAME"', constraint)
            rule.conditions.append(f"agent IS {_word(name)}")

    def action_scope(self, rule: _Rule, tree: Tree) -> None:
        constraint = tree.children[1] if len(tree.children) > 1 else None
        if constraint is None:
            return
        if constraint.data == "action_in":
            raise self.error("action in an action group: corral has no action groups; list the actions: "
                             'action in [Action::"a", Action::"b"]', constraint)
        entities = [child for child in constraint.children if isinstance(child, Tree)]
        rule.targets = [self.tool(entity) for entity in entities]

    def tool(self, entity: Tree) -> str:
        entity_type, name = self.entity(entity)
        if entity_type != "Action":
            raise self.error(f"{entity_type}::…: a tool is an Action", entity)
        if not re.match(r"^[\w\-.:/]+$", name):
            raise self.error(f'Action::"{name}" is not a tool name corral can write as a rule target', entity)
        return name

    def entity(self, tree: Tree) -> tuple[str, str]:
        kind, name = tree.children
        return str(kind)[:-2], self.string(name)

    def target_from(self, rule: _Rule, body: Tree) -> Tree | None:
        """``context.tool like "send_*"`` as a top-level conjunct becomes the rule's target glob
        (targets match exactly, with case, like Cedar's ``like``). Returns the rest of the body."""
        conjuncts = list(_conjuncts(body))
        for index, item in enumerate(conjuncts):
            if item.data == "like" and _is_context(item.children[0], "tool"):
                pattern = self.string(item.children[2])
                if "?" in pattern or "[" in pattern or "\\*" in pattern:
                    raise self.error(f'context.tool like "{pattern}": a tool glob has no ?, [ or literal *', item)
                rule.targets = [pattern]
                rest = conjuncts[:index] + conjuncts[index + 1 :]
                if not rest:
                    return None
                tree = rest[0]
                for other in rest[1:]:
                    tree = Tree("and_", [tree, other], meta=other.meta)
                return tree
        return body

    # -- expressions --

    def expr(self, tree: Any, guarded: frozenset[tuple[str, ...]]) -> str:
        """A Cedar expression as a corral condition. ``guarded`` are the argument paths a ``has`` test
        earlier in the conjunction has made safe to read."""
        if isinstance(tree, Token):
            raise self.error(f"{tree} cannot be a condition on its own", tree)
        kind = tree.data
        if kind == "and_":
            parts, known = [], set(guarded)
            for item in _conjuncts(tree):
                parts.append(self.expr(item, frozenset(known)))
                known |= self.guards(item)
            return " AND ".join(f"({part})" for part in parts)
        if kind == "or_":
            left, right = tree.children
            return f"({self.expr(left, guarded)}) OR ({self.expr(right, guarded)})"
        if kind == "not_":
            return f"NOT ({self.expr(tree.children[0], guarded)})"
        if kind == "true":
            return "phase EXISTS"
        if kind == "false":
            return "phase NOT EXISTS"
        if kind == "has":
            return self.has(tree, guarded)
        if kind == "compare":
            return self.compare(tree, guarded)
        if kind == "in_":
            return self.in_(tree)
        if kind == "like":
            return self.like(tree, guarded)
        if kind == "method":
            return self.method(tree, guarded)
        raise self.error(f"{_describe(tree)} is not supported by corral's rules", tree)

    def guards(self, tree: Tree) -> set[tuple[str, ...]]:
        if tree.data == "has":
            path = self.arg_path(tree.children[0], frozenset(), check=False)
            if path is not None:
                return {(*path, self.key(tree.children[2]))}
        if tree.data == "and_":
            found: set[tuple[str, ...]] = set()
            for item in _conjuncts(tree):
                found |= self.guards(item)
            return found
        return set()

    def key(self, token: Token) -> str:
        return self.string(token) if token.type == "STRING" else str(token)

    def arg_path(self, tree: Any, guarded: frozenset[tuple[str, ...]], *, check: bool = True) -> tuple[str, ...] | None:
        """``context.args.a.b`` → ("a", "b"); ``context.args`` → (); anything else None. With ``check``,
        every step must be guarded by a ``has`` test."""
        steps: list[str] = []
        node = tree
        while isinstance(node, Tree) and node.data in ("attr", "index"):
            steps.append(self.key(node.children[1]))
            node = node.children[0]
        if not (isinstance(node, Tree) and node.data == "var" and str(node.children[0]) == "context"):
            return None
        steps.reverse()
        if not steps or steps[0] != "args":
            return None
        path = tuple(steps[1:])
        if check:
            for depth in range(1, len(path) + 1):
                if path[:depth] not in guarded:
                    shown = "context.args" + "".join(f".{part}" for part in path[: depth - 1])
                    raise self.error(
                        f"context.args.{'.'.join(path[:depth])} may be missing: read it behind "
                        f"`{shown} has {path[depth - 1]} &&`, as Cedar's validator requires (a missing attribute "
                        "makes Cedar skip the policy, where corral would fail closed)",
                        tree,
                    )
        return path

    def has(self, tree: Tree, guarded: frozenset[tuple[str, ...]]) -> str:
        path = self.arg_path(tree.children[0], guarded)
        if path is None:
            raise self.error("has is supported on context.args and its records only", tree)
        return f"arg.{'.'.join((*path, self.key(tree.children[2])))} EXISTS"

    def subject(self, tree: Any, guarded: frozenset[tuple[str, ...]]) -> tuple[str, str] | None:
        """(corral field, kind) for an expression a condition may compare; None for a literal."""
        if isinstance(tree, Tree) and tree.data == "var":
            name = str(tree.children[0])
            if name in ("principal", "action", "resource"):
                return {"principal": "principal", "action": "tool", "resource": "agent"}[name], "entity"
            raise self.error("context is compared attribute by attribute (context.phase, context.args.x)", tree)
        if isinstance(tree, Tree) and tree.data == "attr" and _is_context_attr(tree):
            name = str(tree.children[1])
            if name in ("phase", "effect", "tool"):
                return name, "text"
        path = self.arg_path(tree, guarded)
        if path is not None:
            if not path:
                raise self.error("context.args is compared argument by argument (context.args.x)", tree)
            return "arg." + ".".join(path), "arg"
        if isinstance(tree, Tree) and tree.data in ("long", "string", "true", "false", "entity", "call", "neg"):
            return None
        raise self.error(f"{_describe(tree)} is not something corral's rules can read", tree)

    def literal(self, tree: Any) -> tuple[str, Any]:
        """(kind, value) of a literal: long, decimal, string, bool, entity."""
        kind = tree.data
        if kind == "long":
            return "number", Decimal(str(tree.children[0]))
        if kind == "neg" and isinstance(tree.children[0], Tree) and tree.children[0].data == "long":
            return "number", -Decimal(str(tree.children[0].children[0]))
        if kind == "string":
            return "string", self.string(tree.children[0])
        if kind in ("true", "false"):
            return "bool", kind == "true"
        if kind == "entity":
            return "entity", self.entity(tree)
        if kind == "call":
            return "number", self.decimal(tree)
        raise self.error(f"{_describe(tree)} is not a value corral's rules can hold", tree)

    def decimal(self, tree: Tree) -> Decimal:
        path, arguments = tree.children
        name = "::".join(str(part) for part in path.children)
        args = arguments.children if arguments is not None else []
        if name != "decimal" or len(args) != 1 or args[0].data != "string":
            raise self.error(f"{name}(…): the only extension function corral reads is decimal(\"…\")", tree)
        text = self.string(args[0].children[0])
        try:
            return Decimal(text)
        except InvalidOperation:
            raise self.error(f'decimal("{text}") is not a decimal', tree) from None

    def value(self, kind: str, value: Any, field_name: str, at: Any) -> str:
        """A literal as a rule's value for ``field_name``."""
        if field_name in ("phase", "effect"):
            domain = PHASES if field_name == "phase" else EFFECTS
            if kind != "string" or value not in domain:
                raise self.error(f"context.{field_name} is one of {', '.join(domain)}, never {value!r}", at)
            return value
        if field_name in ("tool", "principal", "agent"):
            expected = {"tool": "Action", "principal": "User", "agent": "Agent"}[field_name]
            if field_name == "tool" and kind == "string":
                return _word(value)
            if kind != "entity" or value[0] != expected:
                raise self.error(f"{field_name} is compared with {expected}::\"…\"", at)
            return _word(value[1])
        if kind == "string":
            if "\n" in value or "\r" in value:
                raise self.error("a line break in a string cannot be written in a rules file (one rule per line)", at)
            return _quoted(value)
        if kind == "bool":
            return "true" if value else "false"
        if kind == "number":
            return format(value, "f")
        raise self.error("an argument is compared with a string, a number, a decimal or a boolean", at)

    def compare(self, tree: Tree, guarded: frozenset[tuple[str, ...]]) -> str:
        left, op_token, right = tree.children
        op = str(op_token)
        subject = self.subject(left, guarded)
        if subject is None:
            left, right, op = right, left, _FLIPPED[op]
            subject = self.subject(left, guarded)
            if subject is None:
                raise self.error("a comparison needs something corral reads on one side", tree)
        if self.subject(right, guarded) is not None:
            raise self.error("a comparison needs a value on one side", tree)
        field_name, _ = subject
        kind, value = self.literal(right)
        if op in ("==", "!="):
            word = "IS" if op == "==" else "IS NOT"
            return f"{field_name} {word} {self.value(kind, value, field_name, right)}"
        if not field_name.startswith("arg.") or kind != "number":
            raise self.error(f"{op} compares numbers: an argument with a number", tree)
        return f"{field_name} {_RELOPS[op]} {format(value, 'f')}"

    def in_(self, tree: Tree) -> str:
        left, _, right = tree.children
        subject = self.subject(left, frozenset())
        if subject is None or subject[0] not in ("principal", "tool"):
            raise self.error("in is supported as principal in Role::… and action in [Action::…]", tree)
        items = right.children[0].children if right.data == "set" and right.children[0] is not None else [right]
        entities = []
        for item in items:
            if not isinstance(item, Tree) or item.data != "entity":
                raise self.error("in takes an entity or a list of entities", item)
            entities.append(self.entity(item))
        names = [_word(name) for _, name in entities]
        listed = f"IS {names[0]}" if len(names) == 1 else f"IN ({', '.join(names)})"
        if subject[0] == "tool":
            if any(kind != "Action" for kind, _ in entities):
                raise self.error('action in […] takes Action::"…" entities', right)
            return f"tool {listed}"
        kinds = {kind for kind, _ in entities}
        if kinds == {"Role"}:
            return f"principal.role {listed}"
        if kinds == {"User"}:
            return f"principal {listed}"
        raise self.error("principal in … takes Role::\"…\" (its roles) or User::\"…\" entities", right)

    def like(self, tree: Tree, guarded: frozenset[tuple[str, ...]]) -> str:
        left, _, pattern_token = tree.children
        subject = self.subject(left, guarded)
        pattern = self.string(pattern_token)
        if subject is None or subject[1] == "entity":
            raise self.error("like is supported on context.tool, context.phase, context.effect and arguments", tree)
        if "?" in pattern or "[" in pattern or "\\*" in pattern:
            raise self.error(f'like "{pattern}": corral globs read ? and [ as wildcards and have no literal *', tree)
        if pattern.lower() != pattern.upper() and subject[0] not in ("phase", "effect"):
            raise self.error(
                f'like "{pattern}" has letters: corral\'s MATCHES ignores letter case and Cedar\'s like does not '
                "(a context.tool like at the top of a condition becomes the target instead)",
                tree,
            )
        if subject[0] in ("phase", "effect") and pattern != pattern.lower():
            return "phase NOT EXISTS"  # phases and effects are lower-case words: an upper-case letter never matches
        return f"{subject[0]} MATCHES {_quoted(pattern)}"

    def method(self, tree: Tree, guarded: frozenset[tuple[str, ...]]) -> str:
        receiver, name, arguments = tree.children
        name = str(name)
        args = arguments.children if arguments is not None else []
        if name in _DECIMAL_METHODS and len(args) == 1:
            subject = self.subject(receiver, guarded)
            if subject is None or not subject[0].startswith("arg."):
                raise self.error(f".{name}(…) is supported on an argument", tree)
            kind, value = self.literal(args[0])
            if kind != "number":
                raise self.error(f".{name}(…) compares with a decimal(\"…\")", args[0])
            return f"{subject[0]} {_DECIMAL_METHODS[name]} {format(value, 'f')}"
        if name == "contains" and len(args) == 1 and receiver.data == "set":
            subject = self.subject(args[0], guarded)
            if subject is None or subject[1] == "entity":
                raise self.error("[…].contains(x) is supported for context.phase, context.effect, context.tool and "
                                 "arguments", tree)
            items = receiver.children[0].children if receiver.children[0] is not None else []
            if not items:
                return "phase NOT EXISTS"
            values = [self.value(*self.literal(item), subject[0], item) for item in items]
            return f"{subject[0]} IN ({', '.join(values)})"
        raise self.error(f".{name}(…) is not supported by corral's rules", tree)


def _conjuncts(tree: Tree) -> Iterator[Tree]:
    if isinstance(tree, Tree) and tree.data == "and_":
        for child in tree.children:
            yield from _conjuncts(child)
    else:
        yield tree


def _is_context_attr(tree: Tree) -> bool:
    base = tree.children[0]
    return isinstance(base, Tree) and base.data == "var" and str(base.children[0]) == "context"


def _is_context(tree: Any, name: str) -> bool:
    return isinstance(tree, Tree) and tree.data == "attr" and _is_context_attr(tree) and str(tree.children[1]) == name


_DESCRIPTIONS = {
    "if_": "if … then … else", "arith": "arithmetic", "neg": "a negative value", "is_": "an is test",
    "set": "a set", "record": "a record", "call": "an extension function", "attr": "an attribute",
    "index": "an attribute", "var": "a variable", "long": "a number", "string": "a string", "entity": "an entity",
}


def _describe(tree: Any) -> str:
    if isinstance(tree, Tree) and tree.data == "attr":
        return f"the attribute .{tree.children[1]}"
    return _DESCRIPTIONS.get(getattr(tree, "data", ""), str(getattr(tree, "data", tree)))


# -- the file -------------------------------------------------------------------------------------------


def import_cedar(text: str, source: str = "<cedar>") -> str:
    """Cedar policy text → the text of a corral rules file. Raises ``CedarImportError`` (file, line,
    column) for anything outside the subset; the result always parses as corral rules."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as error:
        raise _syntax(error, text, source) from None
    importer = _Importer(source)
    rules: list[_Rule] = []
    default_allow = False
    for policy in tree.children:
        rule = importer.policy(policy)
        if rule is None:
            default_allow = True
        else:
            rules.append(rule)
    out = [f"# Imported from {source} by `corral rules import`."]
    out.append("DEFAULT ALLOW" if default_allow else "DEFAULT BLOCK    # Cedar denies what no permit allows")
    lines: list[tuple[_Rule, str]] = []
    for rule in rules:
        actions = [rule.action]
        if not default_allow and rule.action in ("FLAG",):
            actions = ["ALLOW", "FLAG"]  # under Cedar a flag permit also grants
        for action in actions:
            for target in rule.targets:
                line = f"{action} {target}"
                if len(rule.conditions) == 1:
                    line += " WHEN " + rule.conditions[0]
                elif rule.conditions:
                    line += " WHEN " + " AND ".join(f"({c})" for c in rule.conditions)
                if rule.because:
                    line += f" BECAUSE {_quoted(rule.because)}"
                lines.append((rule, line))
    for rule, line in lines:
        origin = f"{source}:{rule.line}" + (f" @id({rule.name})" if rule.name else "")
        out.append(f"{line}    # {origin}")
    result = "\n".join(out) + "\n"
    try:
        parse_rules(result, source)
    except RuleSyntaxError as error:  # a value the rules cannot hold (a newline in a string, say)
        rule = lines[error.line - 3][0] if 0 <= error.line - 3 < len(lines) else None
        raise CedarImportError(f"cannot be written as a corral rule: {error.message}", source=source,
                               line=rule.line if rule else 1, column=1) from None
    return result


def _syntax(error: UnexpectedInput, text: str, source: str) -> CedarImportError:
    line, column = getattr(error, "line", 1) or 1, getattr(error, "column", 1) or 1
    if isinstance(error, UnexpectedToken):
        got = "the end of the file" if error.token.type == "$END" else f'"{error.token}"'
        names = error.accepts or error.expected
        expected = ", ".join(sorted({_TOKEN_WORDS.get(name, f'"{name.lower()}"') for name in names}))
        message = f"not valid Cedar: expected {expected}, got {got}"
    elif isinstance(error, UnexpectedCharacters):
        message = f'not valid Cedar: unexpected "{text[error.pos_in_stream]}"'
    elif isinstance(error, UnexpectedEOF):
        message = "not valid Cedar: the file ends in the middle of a policy"
    else:  # pragma: no cover - lark raises only the three above
        message = f"not valid Cedar: {error}"
    return CedarImportError(message, source=source, line=line, column=column)


_TOKEN_WORDS = {
    "SEMICOLON": '";"', "LPAR": '"("', "RPAR": '")"', "COMMA": '","', "LSQB": '"["', "RSQB": '"]"',
    "LBRACE": '"{"', "RBRACE": '"}"', "STRING": "a string", "NAME": "a name", "INT": "a number",
    "EFFECT": "permit or forbid", "AT": '"@"', "DOT": '"."', "COLON": '":"', "ENTITY_TYPE": 'an entity (Type::"id")',
    "EQ": '"=="', "RELOP": "a comparison", "ADDOP": '"+" or "-"', "OROR": '"||"', "ANDAND": '"&&"', "BANG": '"!"',
    "MINUS": '"-"', "STAR": '"*"', "$END": "the end of the file",
}
