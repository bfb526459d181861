"""The files of a run folder, and whether a run is finished (no torch: the CLI's planning code reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunFolder:
    """File names of a run folder written by the trainer."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def best(self) -> Path:
        return self.root / "best.ckpt.npz"

    @property
    def last(self) -> Path:
        return self.root / "last.ckpt.npz"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def missing(self) -> list[Path]:
        """The files of a finished run that are not there (the trainer writes ``result.json`` last)."""
        return [f for f in (self.config, self.best, self.result) if not f.exists()]

    @property
    def finished(self) -> bool:
        return not self.missing

    def periodic(self, epoch: int) -> Path:
        return self.root / "checkpoints" / f"epoch-{epoch:04d}.ckpt.npz"

    def periodic_checkpoints(self) -> list[Path]:
        return sorted((self.root / "checkpoints").glob("epoch-*.ckpt.npz"))
