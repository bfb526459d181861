"""Readers for interaction files: CSV/TSV/Parquet tables and CiteULike's ``users.dat``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.data.interactions import Interactions
from training.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".inter", ".parquet", ".pq")


def _existing(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} not found. Check data.path (relative paths are resolved from the working directory).")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a {what}.")
    return path


#: what a timestamp column may hold (named in the error for a bad value, and in the config reference)
TIMESTAMP_FORMATS = (
    "numbers (seconds since 1970-01-01 UTC, or any increasing number), or ISO 8601 dates and date-times such as "
    "2024-05-01, 2024-05-01T13:45:00, 2024-05-01 13:45:00.250, 2024-05-01T13:45:00Z or 2024-05-01T13:45:00+02:00 "
    "(without an offset: UTC)"
)


def _numeric(values: np.ndarray, path: Path, column: str, field: str) -> np.ndarray:
    """Converts a string column to float64, naming the first bad value, its row and the config field on failure."""
    try:
        return values.astype(np.float64)
    except ValueError:
        for row, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                raise DataError(
                    f"{path}: column '{column}' (data.{field}) must be numeric, but data row {row + 1} holds {str(v)[:64]!r}. "
                    f"Fix the file or point data.{field} at another column."
                ) from None
        raise


def _iso_seconds(value: str) -> float:
    stamp = datetime.fromisoformat(value.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _timestamps(values: np.ndarray, path: Path, column: str) -> np.ndarray:
    """Seconds (float64) from numbers or ISO 8601 strings (see :data:`TIMESTAMP_FORMATS`), naming the first bad value."""
    try:
        return values.astype(np.float64)
    except ValueError:
        pass
    out = np.empty(len(values), dtype=np.float64)
    for row, v in enumerate(values):
        try:
            out[row] = float(v)
        except ValueError:
            try:
                out[row] = _iso_seconds(v)
            except ValueError:
                raise DataError(
                    f"{path}: column '{column}' (data.timestamp_col) holds {str(v)[:64]!r} in data row {row + 1}, which is not a timestamp. "
                    f"Timestamps are {TIMESTAMP_FORMATS}. Fix the file or point data.timestamp_col at another column."
                ) from None
    return out


def read_table(
    path: str | Path,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
    header: bool = True,
) -> Interactions:
    """Reads a CSV/TSV/Parquet file of interactions.

    Args:
        path: the file. ``.parquet``/``.pq`` is read as Parquet, anything else as delimited text.
        user_col, item_col: column names (or 0-based positions as strings when ``header`` is False).
        rating_col, timestamp_col: optional columns; ratings must be numeric, timestamps numeric or ISO 8601
            (:data:`TIMESTAMP_FORMATS`).
        sep: the delimiter; default tab for ``.tsv``/``.inter``/``.dat``/``.txt``, comma otherwise.
        header: whether the first line of a text file names the columns.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = _existing(Path(path), "interactions file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            if sep is None:
                sep = "," if path.suffix.lower() == ".csv" else "\t"
            read_opts = pacsv.ReadOptions(autogenerate_column_names=not header)
            if not header:
                # pyarrow names them f0, f1, ...; we expose 0-based positions "0", "1", ...
                probe = pacsv.read_csv(path, read_options=read_opts, parse_options=pacsv.ParseOptions(delimiter=sep))
                table = probe.rename_columns([str(i) for i in range(probe.num_columns)])
            else:
                table = pacsv.read_csv(
                    path,
                    read_options=read_opts,
                    parse_options=pacsv.ParseOptions(delimiter=sep),
                    convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in (user_col, item_col) if c}),
                )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot be read as a {'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'delimited text'} table: {exc}") from None

    names = table.column_names
    for field_name, col in (("user_col", user_col), ("item_col", item_col), ("rating_col", rating_col), ("timestamp_col", timestamp_col)):
        if col is not None and col not in names:
            raise DataError(f"{path}: column '{col}' (data.{field_name}) not found; the file has columns {names}. Set data.{field_name} to one of them.")

    def checked(col: str):
        column = table.column(col)
        if column.null_count:
            row = int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{path}: column '{col}' is empty in data row {row + 1}. Remove or fill that row.")
        return column

    def ids(col: str) -> tuple[np.ndarray, np.ndarray]:
        """(int64 codes, distinct ids as strings): dictionary-encoded in Arrow, so that no row becomes a Python or numpy string."""
        column = checked(col).combine_chunks()
        if not pa.types.is_integer(column.type):
            column = pc.cast(column, pa.string())
        encoded = pc.dictionary_encode(column)
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        dictionary = pc.cast(encoded.dictionary, pa.string())
        nul = pc.match_substring(dictionary, "\x00").to_numpy(zero_copy_only=False)
        if nul.any():  # numpy's fixed-width strings drop trailing NULs: 'u1\0' would silently become 'u1'
            row = int(np.flatnonzero(nul[codes])[0])
            raise DataError(f"{path}: column '{col}' holds a NUL character in data row {row + 1}; ids must be text. Remove it from the file.")
        vocab = dictionary.to_numpy(zero_copy_only=False).astype(str)
        blank = np.char.str_len(np.char.strip(vocab)) == 0
        if blank.any():
            raise DataError(f"{path}: column '{col}' is empty in data row {int(np.flatnonzero(blank[codes])[0]) + 1}. Remove or fill that row.")
        return codes, vocab

    def numbers(col: str | None, field: str) -> np.ndarray | None:
        if col is None:
            return None
        column = checked(col)
        if field == "timestamp_col" and (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)):
            return pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64()).to_numpy(zero_copy_only=False) / 1e6  # the reader parsed them
        try:
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            texts = pc.cast(column, pa.string()).to_numpy(zero_copy_only=False).astype(str)
            return _timestamps(texts, path, col) if field == "timestamp_col" else _numeric(texts, path, col, field)

    (users, user_vocab), (items, item_vocab) = ids(user_col), ids(item_col)
    data = Interactions(
        users,
        items,
        rating=numbers(rating_col, "rating_col"),
        timestamp=numbers(timestamp_col, "timestamp_col"),
        origin=str(path),
        user_vocab=user_vocab,
        item_vocab=item_vocab,
    )
    if len(data) == 0:
        raise DataError(f"{path}: the file holds no interactions.")
    return data


def read_citeulike_users_dat(path: str | Path) -> Interactions:
    """Reads CiteULike's ``users.dat``: line u is ``n item_1 … item_n`` for user u (0-based line number).

    The leading count must match the number of items on the line; no timestamps or ratings exist.
    """
    path = _existing(Path(path), "users.dat file")
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                values = np.asarray(parts, dtype=np.int64)
            except ValueError:
                raise DataError(f"{path}:{lineno}: expected integers ('count item item …'), got {line.strip()[:80]!r}.") from None
            if values[0] != len(values) - 1:
                raise DataError(
                    f"{path}:{lineno}: the line says {values[0]} items but lists {len(values) - 1}. "
                    "Is this a CiteULike users.dat file? For other formats use data.source: file."
                )
            users.append(np.full(len(values) - 1, lineno - 1, dtype=np.int64))
            items.append(values[1:])
    if not users:
        raise DataError(f"{path}: the file holds no interactions.")
    return Interactions(
        user=np.concatenate(users),
        item=np.concatenate(items),
        rating=None,
        timestamp=None,
        origin=str(path),
    )
