"""Errors of the exporter."""

from __future__ import annotations

from training.errors import DistillrecError


class ExportError(DistillrecError):
    """An export self-check failed or the run cannot be exported; nothing was published."""
