"""distillrec training side: data, models, trainer, distillation, evaluation, export (needs torch)."""
