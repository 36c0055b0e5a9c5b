"""How every store reads a search query: plain words, never the user's text as full-text syntax."""

from __future__ import annotations

import re

# A word: letters and digits only. Everything else — quotes, ``*``, ``-``, ``^``, ``:``, brackets, ``_`` —
# separates words, so nothing the user types reaches the full-text engine as syntax.
WORD = re.compile(r"[^\W_]+")

MAX_QUERY_WORDS = 32  # a longer query keeps its first 32 distinct words


def query_words(query: str) -> list[str]:
    """The distinct words of a user's query, lower case, two letters or more, in order of appearance.

    The stores search for these words only (each quoted, or passed as a parameter), never for the user's
    text itself: ``NEAR``, ``AND``, ``OR``, ``NOT`` and ``"`` are plain words or separators.
    """
    words: dict[str, None] = {}
    for word in WORD.findall(query.lower()):
        if len(word) > 1:
            words.setdefault(word)
            if len(words) == MAX_QUERY_WORDS:
                break
    return list(words)
