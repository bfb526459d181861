"""What the public answers may say about a bundle that failed to load: a short reason, no server paths.

``/readyz``, ``/v1/models`` and the reload report are public, so a failure reason there names the
bundle-relative file and the problem, never an absolute path of the server nor file contents
(the loaders never quote file contents). The full message goes to the log, bounded too.
"""

from __future__ import annotations

import re
from pathlib import Path

#: longest failure reason shown in a public answer
PUBLIC_REASON_CHARS = 300
#: longest failure detail written to the log
LOG_DETAIL_CHARS = 2000
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s:'\",;()\[\]]+")


def public_reason(message: str, models_dir: Path) -> str:
    """``message`` with paths made relative to the models dir, other absolute paths hidden, and bounded."""
    text = " ".join(str(message).split())  # one line
    for root in sorted({str(Path(models_dir)), str(Path(models_dir).resolve()), str(Path(models_dir).absolute())}, key=len, reverse=True):
        text = text.replace(root.rstrip("/") + "/", "")
    text = _ABSOLUTE_PATH.sub("<path>", text)
    return bounded(text, PUBLIC_REASON_CHARS)


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying so."""
    return text if len(text) <= limit else text[: limit - 14] + " … (truncated)"


def unexpected_reason(exc: BaseException) -> str:
    """The public reason for an error that is not a :class:`~service.bundle.artifacts.BundleError`."""
    return f"unexpected {type(exc).__name__} while loading the bundle; the server log has the details. Re-export the bundle."
