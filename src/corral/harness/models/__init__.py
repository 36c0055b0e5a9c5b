"""Models behind one provider-neutral interface: scripted (offline), OpenAI, Anthropic and Bedrock.

The neutral types and ``make_model`` are exported here; each provider's adapter lives in its own module and
imports its SDK when a model of it is built, so ``import corral.harness.models`` never imports a provider SDK.
"""

from corral.harness.models.base import (
    Message,
    Model,
    ModelError,
    ModelResponse,
    ToolCall,
    ToolSchema,
    Usage,
    estimate_tokens,
)
from corral.harness.models.providers import make_model

__all__ = [
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "ToolCall",
    "ToolSchema",
    "Usage",
    "estimate_tokens",
    "make_model",
]
