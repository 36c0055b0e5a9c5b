"""What the framework adapters share: tools that their framework runs and corral governs.

A framework (Strands, LangChain, the OpenAI Agents SDK) owns its tools and runs them itself; corral
decides before (``session.begin_call``) and records after (``handle.finish``). The governor still needs
to know each tool — its effect, cost and compensation — so the adapters register it here, with a body
that refuses to run outside its framework.
"""

from __future__ import annotations

from typing import Any

from corral.errors import ConfigError, PhaseError
from corral.governance.effects import IRREVERSIBLE


def runs_in_its_framework(**args: Any) -> Any:
    """The registered body of a framework's tool: the framework runs it; corral decides and settles."""
    raise PhaseError("this tool is run by its agent framework; corral governs it through begin_call")


def register_framework_tool(governor: Any, name: str, effect: str | None = None, **options: Any) -> None:
    """Make a framework's tool known to the governor with an effect (and cost, compensate, …).

    Nothing to do when ``effect`` and ``options`` are both absent: the governor's own registration of
    ``name`` applies, and if there is none, every call is refused as an unknown tool (fail closed).
    A tool registered already keeps its registration; a different ``effect`` is a ``ConfigError``.
    """
    if effect is None and not options:
        return
    spec = governor.tools.get(name)
    if spec is None:
        try:
            governor.register(name, runs_in_its_framework, effect=effect or IRREVERSIBLE, **options)
            return
        except ConfigError:
            spec = governor.tools.get(name)
            if spec is None:
                raise
    if effect is not None and spec.effect != effect:
        raise ConfigError(f"tool {name!r} is already registered with effect {spec.effect}, not {effect}")
