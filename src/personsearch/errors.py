"""Errors the command line reports as one readable line (no traceback)."""

from __future__ import annotations


class PersonSearchError(Exception):
    """Base class: a problem with the user's input, files or settings, worded for the user."""


class DatasetError(PersonSearchError):
    """A dataset folder, annotation file or image is missing or malformed."""


class ConfigError(PersonSearchError):
    """A configuration file or override is invalid."""
