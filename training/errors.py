"""User-facing errors of the training side.

Every error that a user can cause (a bad file, a bad config value) is raised as one of these, with a
message that names the file, field or value and says what to do. The CLI prints the message without
a traceback and exits with status 2.
"""

from __future__ import annotations


class DistillrecError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class DataError(DistillrecError):
    """An input data file is missing, malformed, or leaves nothing usable after filtering."""


class ConfigError(DistillrecError):
    """A config file or a --set override is invalid."""


class TrainingError(DistillrecError):
    """Training cannot go on (for example the loss became NaN or infinite)."""
