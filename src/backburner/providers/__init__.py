"""Model providers behind one protocol shaped like the Responses API in background mode."""

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
]
