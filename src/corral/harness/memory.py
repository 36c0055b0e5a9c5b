"""Long-term memory: facts an agent keeps across sessions, searched by full text in the store.

Namespaced per agent and principal, so one user's memories never reach another's sessions.
"""

from __future__ import annotations

from typing import Any

from corral.ids import new_id


class LongTermMemory:
    def __init__(self, store: Any, agent: str) -> None:
        self.store = store
        self.agent = agent

    def namespace(self, principal: str | None) -> str:
        return f"{self.agent}/{principal or '-'}"

    def remember(self, principal: str | None, text: str, tags: str = "") -> str:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("remember needs some text to keep")
        memory_id = new_id()
        self.store.memory_put(self.namespace(principal), memory_id, text.strip(), tags or "")
        return memory_id

    def recall(self, principal: str | None, query: str, limit: int = 5) -> list[dict[str, Any]]:
        if not isinstance(query, str) or not query.strip():
            return []
        limit = max(1, min(int(limit), 50))
        return self.store.memory_search(self.namespace(principal), query, limit)

    def forget_call(self, call: Any) -> None:
        """Compensation for ``remember``: a rolled-back commit forgets what it kept."""
        result = call.result or {}
        memory_id = result.get("remembered") if isinstance(result, dict) else None
        if memory_id:
            self.store.memory_delete(memory_id)
