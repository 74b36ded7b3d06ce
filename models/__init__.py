"""torch nn.Modules, one family per file, and the registry. Imports torch (and pydantic) only."""
from .registry import (
    MODELS,
    build_model,
    describe,
    load_model,
    model_class,
    save_model,
    validate_params,
)

__all__ = ["MODELS", "build_model", "describe", "load_model", "model_class", "save_model", "validate_params"]
