"""Models behind one provider-neutral interface: scripted (offline), OpenAI, Anthropic and Bedrock.

Only the neutral types are exported here; each provider's adapter lives in its own module and imports its
SDK when it is built, so ``import corral.harness.models`` never imports a provider SDK.
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
    make_model,
)

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
