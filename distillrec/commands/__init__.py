"""Sub-commands of the ``distillrec`` CLI (see ``distillrec.cli``)."""
