"""PyTorch models for images, built by name: ``create_model("lenet5", num_classes=10)``."""

from bplab.models.registry import (
    count_parameters,
    create_model,
    default_input,
    describe,
    list_models,
    register_model,
)

__all__ = [
    "count_parameters",
    "create_model",
    "default_input",
    "describe",
    "list_models",
    "register_model",
]
