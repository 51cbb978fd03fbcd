"""The vectorised level lookup equals the per-row reference (used by predict and Dask fits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesmix.spec.level_codes import LevelIndex, level_codes, level_codes_by_row


def _both(frame, factors, keys):
    fast = level_codes(frame, factors, keys)
    slow = level_codes_by_row(frame, factors, keys)
    np.testing.assert_array_equal(fast, slow)
    return fast


def test_text_levels_with_unseen_and_missing_values():
    keys = [("a",), ("c",), ("b",)]
    frame = pd.DataFrame({"g": ["b", "a", "zz", None, "c", "a"]})
    assert list(_both(frame, ["g"], keys)) == [2, 0, -1, -1, 1, 0]
    as_strings = frame.astype({"g": "string"})
    assert list(_both(as_strings, ["g"], keys)) == [2, 0, -1, -1, 1, 0]
    categorical = frame.astype("category")
    assert list(_both(categorical, ["g"], keys)) == [2, 0, -1, -1, 1, 0]


def test_numbers_compare_by_value():
    keys = [(1,), (2,), (10,)]
    frame = pd.DataFrame({"g": [2.0, 1.0, 10.0, 3.0, np.nan]})
    assert list(_both(frame, ["g"], keys)) == [1, 0, 2, -1, -1]
    ints = pd.DataFrame({"g": np.array([10, 2, 7], dtype=np.int32)})
    assert list(_both(ints, ["g"], keys)) == [2, 1, -1]


def test_interactions_of_two_columns_use_the_observed_pairs():
    rng = np.random.default_rng(1)
    a = rng.choice(["x", "y", "z"], 500)
    b = rng.integers(0, 40, 500)
    frame = pd.DataFrame({"a": a, "b": b})
    seen = sorted({(u, int(v)) for u, v in zip(a[:300], b[:300])})
    codes = _both(frame, ["a", "b"], seen)
    assert (codes[:300] >= 0).all()
    assert [seen[c] for c in codes[:300]] == [(u, int(v)) for u, v in zip(a[:300], b[:300])]


@pytest.mark.parametrize(
    "values",
    [["a", 1, "b"], [2**60, 1, 2], [True, False, True]],
    ids=["mixed-object", "huge-integers", "booleans"],
)
def test_cases_the_fast_path_leaves_to_the_reference(values):
    keys = [(values[0],), (values[1],)]
    frame = pd.DataFrame({"g": pd.Series(values, dtype=object)})
    _both(frame, ["g"], keys)


def test_categorical_columns_with_missing_values():
    keys = [(3,), (1,)]
    frame = pd.DataFrame({"g": pd.Categorical([1, None, 3, 2], categories=[1, 2, 3])})
    assert list(_both(frame, ["g"], keys)) == [1, -1, 0, -1]
    text = pd.DataFrame({"g": pd.Categorical(["b", None, "a"], categories=["a", "b"])})
    assert list(_both(text, ["g"], [("a",), ("b",)])) == [1, -1, 0]


@pytest.mark.parametrize("sorted_keys", [True, False])
def test_integer_ids_by_table_equal_the_reference(sorted_keys):
    # integer levels in a narrow span are looked up in a dense table: gaps, fractions,
    # negative IDs, values beyond both ends, NaN and nullable integers must all agree
    rng = np.random.default_rng(7)
    levels = sorted(set(rng.integers(-50, 2000, 800).tolist()))
    keys = [(v,) for v in (levels if sorted_keys else rng.permutation(levels).tolist())]
    values = rng.integers(-80, 2100, 5000).astype(float)
    values[::97] += 0.5
    values[::101] = np.nan
    frame = pd.DataFrame({"g": values})
    index = LevelIndex(keys)
    assert index.tables[0] is not None and index.direct is sorted_keys
    codes = _both(frame, ["g"], keys)
    assert (codes >= 0).sum() > 1000 and (codes == -1).sum() > 100
    nullable = pd.DataFrame({"g": pd.array(np.where(np.isnan(values), None, values // 1))})
    _both(nullable.astype({"g": "Int64"}), ["g"], keys)
    _both(pd.DataFrame({"g": values // 1}).astype({"g": "category"}).dropna(), ["g"], keys)


def test_integer_ids_in_a_wide_span_use_the_hash_index():
    keys = [(1,), (10**12,), (5,)]
    frame = pd.DataFrame({"g": [5, 10**12, 2, 1]})
    assert LevelIndex(keys).tables[0] is None
    assert list(_both(frame, ["g"], keys)) == [2, 1, -1, 0]


@pytest.mark.parametrize("dtype", ["float64", "float32", "Float64"])
def test_near_integer_floats_are_not_levels(dtype):
    # with negative levels, value - lowest can round to a whole number: the table
    # must test the value itself
    keys = [(v,) for v in range(-5, 20)]
    frame = pd.DataFrame({"g": [0.1 * 3 * 10, 1e-17, -1e-17, 1.000000000000001, 4.0, -5.0]})
    codes = _both(frame.astype({"g": dtype}), ["g"], keys)
    assert codes[-2:].tolist() == [9, 0]


def test_repeated_keys_leave_other_positions_alone():
    keys = [(1,), (1,), (2,)]
    # fits never repeat a key; a repeated one must not shift the positions of others
    assert LevelIndex(keys).direct is False
    codes = level_codes(pd.DataFrame({"g": [2, 1, 3]}), ["g"], keys)
    assert codes[0] == 2 and codes[1] in (0, 1) and codes[2] == -1
