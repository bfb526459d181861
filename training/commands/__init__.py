"""Sub-commands of the ``distillrec`` CLI (see ``training.cli``)."""
