"""The grammar of ``*.rules`` files, for lark's LALR parser.

One rule or directive per line: the parser hands lark one line at a time. The grammar is deliberately
loose about *words*: a field, a value, a tool name and a time zone are all a ``WORD`` here, and the
parser (``parser.py``) decides what a word means in its place. That keeps the grammar small and lets
the parser say "unknown field ``colour``" with the word's position instead of "unexpected token".

Keywords are case-insensitive and only count as keywords when they stand alone (``INSIDE`` is never
``IN`` followed by ``SIDE``, ``notify`` is never ``NOT``). They outrank ``WORD`` where both could
follow, and LALR's contextual lexer offers a keyword only where the grammar can use it, so a tool named
``plan`` or ``flag`` is still a tool name after ``BLOCK``. The clause words ``WHEN``, ``UNLESS``,
``BECAUSE``, ``AND`` and ``OR`` are never words: ``BLOCK WHEN phase IS x`` is an error (no target), not
a rule for a tool called ``WHEN``.

A ``#`` starts a comment anywhere outside a double-quoted string, so a comment is never part of a value.
"""

from __future__ import annotations

# Single-word keywords, in the order the error messages list them.
KEYWORDS: tuple[str, ...] = (
    "BLOCK",
    "ALLOW",
    "FLAG",
    "REQUIRE",
    "APPROVAL",
    "FOR",
    "PLAN",
    "DEFAULT",
    "TIMEZONE",
    "MODE",
    "SHADOW",
    "WHEN",
    "UNLESS",
    "BECAUSE",
    "AND",
    "OR",
    "NOT",
    "IS",
    "IN",
    "ABOVE",
    "BELOW",
    "AT",
    "LEAST",
    "MOST",
    "MATCHES",
    "CONTAINS",
    "EXISTS",
    "OUTSIDE",
    "INSIDE",
    "CALLS",
)

# Words that can never be a bare value or tool name, because they end or join clauses.
RESERVED: tuple[str, ...] = ("WHEN", "UNLESS", "BECAUSE", "AND", "OR")

# What ends a word: whitespace, a comment, a quote, parentheses, a comma.
_DELIMITER = r'[\s#"(),]'

_RULES = r"""
start: directive | rule

directive: TIMEZONE WORD          -> timezone
         | DEFAULT (ALLOW | BLOCK) -> default
         | REQUIRE PLAN            -> require_plan
         | MODE WORD               -> mode

rule: shadow? action target when_clause? unless_clause? because_clause?

shadow: SHADOW

action: BLOCK
      | ALLOW
      | FLAG
      | REQUIRE APPROVAL FOR

target: WORD

when_clause: WHEN expr
unless_clause: UNLESS expr
because_clause: BECAUSE STRING

?expr: and_expr
     | expr OR and_expr        -> or_

?and_expr: not_expr
         | and_expr AND not_expr -> and_

?not_expr: atom
         | NOT not_expr        -> not_

?atom: condition
     | LPAR expr RPAR          -> group

condition: subject operation

subject: WORD                                      -> field
       | CALLS LPAR pattern (COMMA WORD)? RPAR     -> calls

pattern: WORD | STRING

operation: IS value            -> is_
         | IS NOT value        -> is_not
         | IN value_list       -> in_
         | NOT IN value_list   -> not_in
         | ABOVE value         -> above
         | BELOW value         -> below
         | AT LEAST value      -> at_least
         | AT MOST value       -> at_most
         | MATCHES value       -> matches
         | CONTAINS value      -> contains
         | EXISTS              -> exists
         | NOT EXISTS          -> not_exists
         | INSIDE WORD         -> inside
         | OUTSIDE WORD        -> outside

value: WORD | STRING

value_list: LPAR value (COMMA value)* RPAR

LPAR: "("
RPAR: ")"
COMMA: ","
STRING: /"(?:[^"\\\n]|\\.)*"/
COMMENT: /#[^\n]*/
WS: /[^\S\n]+/

%ignore WS
%ignore COMMENT
"""


def _keyword_terminals() -> str:
    lines = [f"{kw}.3: /{kw.lower()}(?!{_DELIMITER.replace('[', '[^', 1)})/i" for kw in KEYWORDS]
    return "\n".join(lines)


def _word_terminal() -> str:
    reserved = "|".join(word.lower() for word in RESERVED)
    # not a reserved word standing alone; then any run of non-delimiters
    return f'WORD.1: /(?!(?:{reserved})(?!{_DELIMITER.replace("[", "[^", 1)}))[^\\s#"(),]+/i'


GRAMMAR: str = "\n".join((_RULES, _keyword_terminals(), _word_terminal(), ""))
