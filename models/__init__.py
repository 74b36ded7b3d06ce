"""torch nn.Modules, one family per file, and the registry. Imports torch (and pydantic) only, and torch only
when a module is asked for: `validate_params` (models/params.py) checks a spec without it."""
from .params import validate_params

_REGISTRY = ("MODELS", "build_model", "describe", "load_model", "model_class", "save_model")


def __getattr__(name: str):
    if name in _REGISTRY:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = [*_REGISTRY, "validate_params"]
