"""Which adapter serves which ``provider:`` of an agent file, and ``make_model``, which builds it.

Importing this module imports every adapter but no provider SDK: an adapter imports its SDK when a model
of it is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.harness.models.anthropic import AnthropicModel
from corral.harness.models.base import Model
from corral.harness.models.bedrock import BedrockModel
from corral.harness.models.gemini import GeminiModel
from corral.harness.models.openai import OpenAIModel
from corral.harness.models.scripted import ScriptedModel

ADAPTERS: dict[str, Any] = {"openai": OpenAIModel, "anthropic": AnthropicModel, "bedrock": BedrockModel,
                            "gemini": GeminiModel}
PROVIDERS = ("scripted", *ADAPTERS)


def make_model(config: Mapping[str, Any], *, base_dir: Path) -> Model:
    """The ``model:`` mapping of an agent file → a model. SDKs are imported only for their provider.

    ``script`` (scripted) resolves against ``base_dir``, the agent file's directory. ``max_tokens``,
    ``price`` and ``fallback`` belong to the loop and are not read here. Besides the agent-file keys, a
    caller may pass ``max_retries`` and ``timeout`` (seconds) for the SDK-backed providers.
    """
    provider = config.get("provider") or "scripted"
    if provider not in PROVIDERS:
        raise ValueError(f"unknown model provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    if provider == "scripted":
        return _scripted(config, base_dir)
    if not config.get("id"):
        raise ValueError(f"the {provider} model needs `id: <model id>`")
    return ADAPTERS[provider].from_config(config)


def _scripted(config: Mapping[str, Any], base_dir: Path) -> ScriptedModel:
    script = config.get("script")
    if not script:
        raise ValueError("the scripted model needs `script: path/to/script.yaml`")
    path = Path(script)
    if not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ValueError(f"model.script: file not found: {path}")
    model = ScriptedModel.from_file(path)
    if config.get("id"):
        model.id = str(config["id"])
    return model
