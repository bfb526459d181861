"""distillrec training side: data, models, trainer, distillation, evaluation, export (needs torch)."""

__version__ = "0.1.0"
