"""Model providers behind one protocol shaped like the Responses API in background mode."""

from backburner.config import Settings
from backburner.providers.base import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    InputMessage,
    JsonSchemaFormat,
    ModelRequest,
    Provider,
    ResponseSnapshot,
    Usage,
)
from backburner.providers.offline import OfflineProvider


async def start_provider(settings: Settings) -> Provider:
    """OpenAI (or whatever OPENAI_BASE_URL names) with a key; without one, the emulator in
    this process, reached through the same OpenAI provider. Close it with `aclose()`."""
    from backburner.providers.openai import OpenAIProvider

    if settings.openai_api_key is not None:
        return OpenAIProvider.connect(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_seconds,
        )
    from backburner.providers.embedded import EmbeddedEmulatorProvider

    return await EmbeddedEmulatorProvider.start(latency_s=settings.offline_latency_s)


__all__ = [
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "InputMessage",
    "JsonSchemaFormat",
    "ModelRequest",
    "OfflineProvider",
    "Provider",
    "ResponseSnapshot",
    "Usage",
    "start_provider",
]
