"""Errors the command line reports as one readable line (no traceback)."""

from __future__ import annotations


class PersonSearchError(Exception):
    """Base class: a problem with the user's input, files or settings, worded for the user."""


class DatasetError(PersonSearchError):
    """A dataset folder, annotation file or image is missing or malformed."""


class ConfigError(PersonSearchError):
    """A configuration file or override is invalid."""


class PersonSearchWarning(UserWarning):
    """Something the user should know about their input that does not stop the work (shown as one line)."""


class DatasetWarning(PersonSearchWarning):
    """Annotations were dropped or repaired while loading a dataset (what and how many, naming the file)."""
