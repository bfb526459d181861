"""Row gradients for the embedding tables of the torch loop's per-row Adam step
(``train.adam_rows: batch``, :mod:`training.row_adam`).

A lookup ``table[index]`` makes autograd build a gradient as large as the whole table, every step,
however few rows the batch read (and torch's sparse gradients, the alternative, sort their indices
each time two of them are added up). Once :func:`mark_row_grads` has marked a model's tables, the
lookups of the models and the distillation methods (:func:`rows`, and
:func:`training.models.gather_dot.gather_dot`) leave ``table.grad`` alone and append their
gradient to ``table.row_grads`` instead, as (row indices, one gradient row per index) pairs: the
same values, on the rows read, added up by the Adam step that consumes them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mark_row_grads(model: nn.Module) -> list[torch.Tensor]:
    """Marks the weights of ``model``'s embedding tables for row gradients; returns them."""
    tables = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
    for w in tables:
        mark_table(w)
    return tables


def mark_table(table: torch.Tensor) -> None:
    """Marks one 2-D ``table`` for row gradients."""
    table.row_grads = []  # type: ignore[attr-defined]  # attributes of our own on the tensor
    table.row_slots = np.full(table.shape[0], -1, dtype=np.int64)  # type: ignore[attr-defined]


def takes_row_grads(table: torch.Tensor) -> bool:
    """Whether lookups give ``table`` row gradients (it is marked and gradients are being recorded)."""
    return hasattr(table, "row_grads") and table.requires_grad and torch.is_grad_enabled()


def recorded_row_grads(table: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (row indices, gradient rows) pairs recorded for a marked ``table`` and not yet consumed."""
    return table.row_grads  # type: ignore[attr-defined]


def row_slots(table: torch.Tensor) -> np.ndarray:
    """A marked ``table``'s slot map for :func:`training.kernels.assign_slots`: −1 for every row
    between uses (whoever assigns slots sets the rows it read back to −1), so that summing gradients
    per row never allocates or clears an array as long as the table."""
    return table.row_slots  # type: ignore[attr-defined]


def add_row_grads(table: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> None:
    """Adds gradient values[x] to row index[x] of a marked ``table`` (index [k], values [k, d])."""
    recorded_row_grads(table).append((index, values))


class _Rows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, index):
        ctx.table, ctx.index = table, index
        return table.detach()[index]

    @staticmethod
    def backward(ctx, g):
        add_row_grads(ctx.table, ctx.index.reshape(-1), g.reshape(-1, g.shape[-1]))
        return None, None


def rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` (rows of a 2-D table), with a row gradient for a marked ``table``."""
    if takes_row_grads(table):
        return _Rows.apply(table, index)
    return table[index]
