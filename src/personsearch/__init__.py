"""personsearch: end-to-end person search with diverse knowledge distillation (DKD)."""

__version__ = "0.1.0"
