"""Data sources, filters and splits: correctness and the errors users see."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.config import DataConfig
from training.data import load_dataset
from training.data.interactions import Interactions, deduplicate, filter_kcore
from training.data.readers import read_citeulike_users_dat, read_table
from training.data.splits import leave_one_out, ratio_holdout
from training.errors import DataError


def _write(path, text):
    path.write_text(text)
    return path


def _log(users, items, times=None):
    return Interactions(np.array(users, dtype=str), np.array(items, dtype=str), None, None if times is None else np.array(times, float), "<test>")


def test_csv_with_custom_columns(tmp_path):
    f = _write(tmp_path / "x.csv", "uid,iid,stars,ts\na,1,5,10\na,2,3,11\nb,1,4,12\n")
    data = read_table(f, "uid", "iid", "stars", "ts")
    assert data.user.tolist() == ["a", "a", "b"]
    assert data.item.tolist() == ["1", "2", "1"]
    assert data.rating.tolist() == [5, 3, 4]
    assert data.timestamp.tolist() == [10, 11, 12]


def test_tsv_without_header_uses_positions(tmp_path):
    f = _write(tmp_path / "u.data", "1\t10\t5\t100\n2\t10\t3\t200\n")
    data = read_table(f, "0", "1", "2", "3", header=False)
    assert data.user.tolist() == ["1", "2"] and data.rating.tolist() == [5, 3]


def test_parquet(tmp_path):
    f = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user": [1, 1, 2], "item": [7, 8, 7]}), f)
    data = read_table(f, "user", "item")
    assert data.user.tolist() == ["1", "1", "2"] and data.item.tolist() == ["7", "8", "7"]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match="nope.csv: interactions file not found"):
        read_table(tmp_path / "nope.csv", "user", "item")


def test_missing_column_names_it_and_lists_the_columns(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item\na,1\n")
    with pytest.raises(DataError, match=r"column 'rating' \(data.rating_col\) not found.*\['user', 'item'\]"):
        read_table(f, "user", "item", rating_col="rating")


def test_non_numeric_rating_names_row_and_value(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item,rating\na,1,5\nb,2,great\n")
    with pytest.raises(DataError, match=r"column 'rating' \(data.rating_col\) must be numeric, but data row 2 holds 'great'"):
        read_table(f, "user", "item", rating_col="rating")


def test_empty_cell_is_reported(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item\na,1\n,2\n")
    with pytest.raises(DataError, match="column 'user' is empty in data row 2"):
        read_table(f, "user", "item")


def test_min_rating_that_leaves_nothing(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item,rating\na,1,1\na,2,2\n")
    cfg = DataConfig(source="file", path=f, rating_col="rating", min_rating=4)
    with pytest.raises(DataError, match="no interactions are left after keeping ratings >= 4"):
        load_dataset(cfg)


def test_min_rating_without_rating_column(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item\na,1\n")
    with pytest.raises(DataError, match="no rating column"):
        load_dataset(DataConfig(source="file", path=f, min_rating=4))


def test_too_few_interactions_for_loo_names_the_user(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item\na,1\na,2\na,3\nb,1\nb,2\n")
    with pytest.raises(DataError, match=r"user 'b' has 2 interaction\(s\).*min_user_interactions"):
        load_dataset(DataConfig(source="file", path=f))
    ds = load_dataset(DataConfig(source="file", path=f, min_user_interactions=3))
    assert ds.user_ids.tolist() == ["a"]


def test_loo_by_time_holds_out_the_last_two():
    data = _log(["u"] * 4 + ["v"] * 3, ["a", "b", "c", "d", "a", "b", "c"], [4, 1, 3, 2, 5, 5, 5])
    ds = leave_one_out(data, "t", seed=0)
    item = {i: k for k, i in enumerate(ds.item_ids)}
    u, v = list(ds.user_ids).index("u"), list(ds.user_ids).index("v")
    assert ds.split == "loo-time"
    assert ds.test[u].indices.tolist() == [item["a"]]  # time 4
    assert ds.valid[u].indices.tolist() == [item["c"]]  # time 3
    # equal timestamps: file order decides, deterministically
    assert ds.test[v].indices.tolist() == [item["c"]]
    assert ds.valid[v].indices.tolist() == [item["b"]]
    assert sorted(ds.train[u].indices.tolist()) == sorted([item["b"], item["d"]])


def test_random_loo_is_seeded():
    data = _log(["u"] * 10, [str(i) for i in range(10)])
    a, b, c = (leave_one_out(data, "t", s) for s in (1, 1, 2))
    assert a.split == "loo-random"
    assert (a.test != b.test).nnz == 0
    assert (a.test != c.test).nnz + (a.valid != c.valid).nnz > 0


def test_ratio_split_shares_determinism_and_cold_targets():
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{k}" for k in range(20)], 10)
    items = np.concatenate([rng.choice(30, 10, replace=False) for _ in range(20)]).astype(str)
    data = _log(users, items)
    ds = ratio_holdout(data, "t", seed=0, valid=0.2, test=0.2, drop_cold=False)
    assert np.diff(ds.test.indptr).tolist() == [2] * 20
    assert np.diff(ds.valid.indptr).tolist() == [2] * 20
    assert np.diff(ds.train.indptr).tolist() == [6] * 20
    again = ratio_holdout(data, "t", seed=0, valid=0.2, test=0.2, drop_cold=False)
    assert (ds.test != again.test).nnz == 0
    warm = ratio_holdout(data, "t", seed=0, valid=0.2, test=0.2, drop_cold=True)
    trained = set(np.flatnonzero(np.diff(warm.train.tocsc().indptr)).tolist())
    assert set(warm.test.indices.tolist()) <= trained


def test_dedup_keeps_the_latest_and_kcore_is_iterative():
    data = _log(["u", "u", "v"], ["a", "a", "a"], [5, 1, 2])
    d = deduplicate(data)
    assert len(d) == 2 and sorted(d.timestamp.tolist()) == [2, 5]
    # item c has 1 user; dropping it leaves w with 1 interaction, so w goes too
    k = filter_kcore(_log(["u", "u", "v", "v", "w", "w"], ["a", "b", "a", "b", "a", "c"]), 2, 2)
    assert sorted(set(k.user.tolist())) == ["u", "v"]


def test_citeulike_users_dat(tmp_path):
    f = _write(tmp_path / "users.dat", "2 5 7\n1 5\n3 1 2 3\n")
    data = read_citeulike_users_dat(f)
    assert data.user.tolist() == ["0", "0", "1", "2", "2", "2"]
    assert data.item.tolist() == ["5", "7", "5", "1", "2", "3"]
    bad = _write(tmp_path / "bad.dat", "2 5 7\n4 1\n")
    with pytest.raises(DataError, match=r"bad.dat:2: the line says 4 items but lists 1"):
        read_citeulike_users_dat(bad)


def test_presplit_folder_and_missing_part(tmp_path):
    for part, rows in (("train", "u\ti\n0\t0\n0\t1\n1\t1\n"), ("valid", "u\ti\n0\t2\n"), ("test", "u\ti\n1\t2\n")):
        _write(tmp_path / f"{part}.tsv", rows)
    ds = load_dataset(DataConfig(source="presplit", path=tmp_path, user_col="u", item_col="i"))
    assert (ds.n_users, ds.n_items, ds.train.nnz, ds.valid.nnz, ds.test.nnz) == (2, 3, 3, 1, 1)
    (tmp_path / "test.tsv").unlink()
    with pytest.raises(DataError, match="no 'test' file"):
        load_dataset(DataConfig(source="presplit", path=tmp_path, user_col="u", item_col="i"))


def test_numeric_ids_are_ordered_numerically():
    ds = leave_one_out(_log(["10", "10", "10", "2", "2", "2"], ["1", "2", "10", "1", "2", "10"]), "t", 0)
    assert ds.user_ids.tolist() == ["2", "10"]
    assert ds.item_ids.tolist() == ["1", "2", "10"]


def test_integer_and_string_id_files_give_the_same_dataset(tmp_path):
    # integer columns in Parquet, the same ids as text in CSV (and as zero-padded text that sorts differently)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 600), rng.integers(0, 90, 600) * 7
    ts = rng.permutation(600)
    pq.write_table(pa.table({"u": users, "i": items, "t": ts}), tmp_path / "ints.parquet")
    lines = ["u,i,t"] + [f"{u},{i},{t}" for u, i, t in zip(users, items, ts, strict=True)]
    _write(tmp_path / "texts.csv", "\n".join(lines) + "\n")
    pq.write_table(pa.table({"u": users.astype(str), "i": items.astype(str), "t": ts}), tmp_path / "texts.parquet")
    datasets = [
        load_dataset(DataConfig(source="file", path=tmp_path / f, user_col="u", item_col="i", timestamp_col="t"))
        for f in ("ints.parquet", "texts.csv", "texts.parquet")
    ]
    assert len({d.fingerprint() for d in datasets}) == 1
    ds = datasets[0]
    assert ds.item_ids[:3].tolist() == ["0", "7", "14"]  # integer ids in numeric order, as strings
    raw = read_table(tmp_path / "ints.parquet", "u", "i", timestamp_col="t")
    assert raw.user.tolist() == users.astype(str).tolist() and len(raw.user_vocab) == len(np.unique(users))


def test_presplit_parts_with_their_own_ids_are_indexed_over_the_union(tmp_path):
    for part, rows in (("train", "u,i\nb,x\na,y\na,x\n"), ("valid", "u,i\nc,y\n"), ("test", "u,i\nb,z\n")):
        _write(tmp_path / f"{part}.csv", rows)
    ds = load_dataset(DataConfig(source="presplit", path=tmp_path, user_col="u", item_col="i"))
    assert ds.user_ids.tolist() == ["a", "b", "c"] and ds.item_ids.tolist() == ["x", "y", "z"]
    assert ds.train.toarray().tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert ds.valid.nonzero()[0].tolist() == [2] and ds.test.nonzero()[1].tolist() == [2]
