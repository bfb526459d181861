"""Data: sources → filters → split → :class:`Dataset`.

``load_dataset(DataConfig)`` is the one entry point; see ``training.config.DataConfig`` for options.
"""

from __future__ import annotations

from pathlib import Path

from training.config import DataConfig
from training.data.dataset import Dataset
from training.data.interactions import Interactions, deduplicate, filter_kcore, filter_min_rating
from training.data.movielens import COLUMNS as ML100K_COLUMNS
from training.data.movielens import ml100k_path
from training.data.readers import TABLE_SUFFIXES, read_citeulike_users_dat, read_table
from training.data.splits import leave_one_out, presplit, ratio_holdout
from training.errors import DataError

__all__ = ["Dataset", "load_dataset", "read_interactions"]


def read_interactions(cfg: DataConfig, path: Path | None = None) -> Interactions:
    """Reads the raw interaction log that ``cfg`` points at (no filtering or splitting)."""
    if cfg.source == "ml-100k":
        cols = ML100K_COLUMNS
        return read_table(ml100k_path(), cols["user_col"], cols["item_col"], cols["rating_col"], cols["timestamp_col"], sep="\t")
    path = Path(path) if path is not None else _cfg_path(cfg)
    if cfg.source == "citeulike":
        return read_citeulike_users_dat(path)
    return read_table(path, cfg.user_col, cfg.item_col, cfg.rating_col, cfg.timestamp_col, cfg.sep, cfg.header)


def _cfg_path(cfg: DataConfig) -> Path:
    """``cfg.path``, which ``DataConfig`` requires for every source but ml-100k."""
    if cfg.path is None:
        raise DataError(f"data.path is required for data.source '{cfg.source}'")
    return Path(cfg.path)


def _presplit_file(folder: Path, part: str) -> Path:
    if not folder.is_dir():
        raise DataError(f"{folder}: data.source 'presplit' needs a folder holding {part}.tsv/.csv/.parquet files.")
    for suffix in TABLE_SUFFIXES:
        candidate = folder / f"{part}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: no '{part}' file (looked for {part}{{{','.join(TABLE_SUFFIXES)}}}). Add it or fix data.path.")


def _clean(data: Interactions, cfg: DataConfig) -> Interactions:
    data = filter_min_rating(data, cfg.min_rating)
    data = deduplicate(data)
    return filter_kcore(data, cfg.min_user_interactions, cfg.min_item_interactions)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Loads, filters (min rating, dedup, k-core) and splits the data described by ``cfg``."""
    if cfg.source == "presplit":
        folder = _cfg_path(cfg)
        parts = {p: read_table(_presplit_file(folder, p), cfg.user_col, cfg.item_col, sep=cfg.sep, header=cfg.header) for p in ("train", "valid", "test")}
        name = cfg.name or folder.name
        return presplit(parts["train"], parts["valid"], parts["test"], name, str(folder))
    data = _clean(read_interactions(cfg), cfg)
    name = cfg.name or ("ml-100k" if cfg.source == "ml-100k" else _cfg_path(cfg).stem)
    if cfg.split == "loo":
        return leave_one_out(data, name, cfg.seed)
    return ratio_holdout(data, name, cfg.seed, cfg.valid_ratio, cfg.test_ratio, cfg.drop_cold_targets)
