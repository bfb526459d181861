"""The ``distillrec`` command line and its tools: sub-commands, the demo, an HTTP client of the
service and the benchmarks. Nothing here imports torch at import time; each command imports the
training side (torch) or the service side only when it runs."""

__version__ = "0.1.0"
