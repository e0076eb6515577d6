"""The end-to-end person search network (DKD student): backbone, RPN, detection and Re-ID heads, OIM."""

from .build import CONFIG_DOC, DEFAULT_MODEL_CONFIG, build_model, merge_config
from .oim import OIMLoss
from .person_search import PersonSearchModel, ReIDOutput

__all__ = [
    "CONFIG_DOC",
    "DEFAULT_MODEL_CONFIG",
    "OIMLoss",
    "PersonSearchModel",
    "ReIDOutput",
    "build_model",
    "merge_config",
]
