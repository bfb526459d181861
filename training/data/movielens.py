"""MovieLens-100K, the embedded default dataset, obtained through the Python package registry.

No direct MovieLens download is assumed to work. The ``recbole==1.2.1`` wheel on PyPI carries the
ratings as ``recbole/dataset_example/ml-100k/ml-100k.inter`` (100,000 ratings). We download that
wheel with pip (no install, no dependencies), read the one file out of it, verify its sha256 and
cache it under the user cache dir. MovieLens is © GroupLens, University of Minnesota: free for
research use, not to be redistributed; distillrec never ships the file itself.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from training.errors import DataError

WHEEL_REQUIREMENT = "recbole==1.2.1"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
SHA256 = "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
FILENAME = "ml-100k.inter"
COLUMNS = {"user_col": "user_id:token", "item_col": "item_id:token", "rating_col": "rating:float", "timestamp_col": "timestamp:float"}


def cache_dir() -> Path:
    """``$DISTILLREC_CACHE_DIR`` if set, else the platform's user cache dir for distillrec."""
    env = os.environ.get("DISTILLREC_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("distillrec"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ml100k_path(progress: bool = True) -> Path:
    """Returns the path of the verified, cached ``ml-100k.inter``, fetching it on first use."""
    target = cache_dir() / "ml-100k" / FILENAME
    if target.exists():
        if _sha256(target) == SHA256:
            return target
        target.unlink()  # corrupt or truncated cache entry: fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        if progress:
            print(f"Fetching MovieLens-100K from the {WHEEL_REQUIREMENT} wheel on PyPI ...", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps", "--only-binary=:all:", "--quiet", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DataError(
                f"Could not download {WHEEL_REQUIREMENT} (which carries MovieLens-100K) with pip: "
                f"{(proc.stderr or proc.stdout).strip()[-400:]}\n"
                "Check that PyPI is reachable, or place a verified copy of ml-100k.inter at "
                f"{target} (sha256 {SHA256})."
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                payload = zf.read(MEMBER)
            except KeyError:
                raise DataError(f"{wheels[0].name} does not contain {MEMBER}.") from None
        digest = hashlib.sha256(payload).hexdigest()
        if digest != SHA256:
            raise DataError(f"{MEMBER} in {wheels[0].name} has sha256 {digest}, expected {SHA256}; refusing to use it.")
        partial = Path(tmp) / FILENAME
        partial.write_bytes(payload)
        os.replace(partial, target)  # atomic: a reader never sees half a file
    return target
