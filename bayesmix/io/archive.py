"""Entries of a bayesmix save file: arrays, data frames, DataTrees, tagged values.

One job: turn Python objects into zip entries and back without pickle, and
refuse anything malformed with :class:`FileFormatError`. The file layout
itself is documented in :mod:`bayesmix.io`.

* arrays: ``.npy`` written by :func:`numpy.save` and read with
  ``allow_pickle=False``, so an object array (the only kind that needs pickle)
  is refused;
* data frames: Parquet (pyarrow) with categorical columns replaced by their
  integer codes, each one's categories in a one-column Parquet file of their
  own (Parquet keeps a categorical's level order only for text categories);
* DataTrees: netCDF-4 through h5netcdf;
* values (estimates, iteration records, timings): JSON, with tags for what
  JSON lacks (arrays, tuples, numpy scalars, non-finite floats).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import DataError

__all__ = ["ArchiveReader", "ArchiveWriter", "FileFormatError", "frame_entries", "read_frame"]

#: numpy scalar kinds a file may tag: bool, signed and unsigned integers, floats.
_SCALAR_KINDS = "biuf"
#: Largest metadata entry read (bytes); a real one is a few kB.
_MAX_METADATA = 64 * 2**20
#: Deepest nesting of tagged values read; bayesmix writes at most 3 levels.
_MAX_DEPTH = 32


class FileFormatError(DataError):
    """A file is not a bayesmix save file, is damaged, or has an unreadable format version."""


# --- writing ------------------------------------------------------------------


class ArchiveWriter:
    """Adds entries to an open :class:`zipfile.ZipFile` opened for writing."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive

    def add_bytes(self, name: str, data: bytes) -> str:
        self.archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        return name

    def add_json(self, name: str, value: Any) -> str:
        # allow_nan=False: the metadata stays strict JSON (non-finite floats are tagged)
        text = json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False)
        return self.add_bytes(name, text.encode("utf-8"))

    def add_array(self, name: str, array: Any) -> str:
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise TypeError(f"{name}: object arrays cannot be stored without pickle")
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self.add_bytes(name, buffer.getvalue())

    def add_tree(self, name: str, tree: Any) -> str:
        buffer = io.BytesIO()
        netcdf_ready(tree).to_netcdf(buffer, engine="h5netcdf")
        return self.add_bytes(name, buffer.getvalue())

    def encode(self, value: Any, prefix: str) -> Any:
        """A JSON value for ``value``; arrays become entries named after ``prefix``."""
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.ndarray):
            return {"array": self.add_array(f"{prefix}.npy", value)}
        if isinstance(value, np.generic):
            if value.dtype.kind not in _SCALAR_KINDS:
                raise TypeError(f"{prefix}: cannot store a numpy {value.dtype} scalar")
            return {"scalar": self.encode(value.item(), prefix), "dtype": value.dtype.str}
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"float": repr(value)}
        if isinstance(value, tuple | list):
            items = [self.encode(v, f"{prefix}_{i}") for i, v in enumerate(value)]
            return {"tuple": items} if isinstance(value, tuple) else {"list": items}
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return {"dict": {k: self.encode(v, f"{prefix}_{k}") for k, v in value.items()}}
        raise TypeError(f"{prefix}: cannot store a value of type {type(value).__name__}")


def netcdf_ready(tree: Any) -> Any:
    """A copy of ``tree`` whose attributes netCDF can hold.

    netCDF attributes are text, numbers or arrays of them: booleans become 0/1
    and anything else (a dict of sampler settings) its JSON text.
    """
    import xarray as xr

    def clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {str(k): _netcdf_attribute(v) for k, v in attrs.items()}

    nodes = {}
    for node in tree.subtree:
        dataset = node.to_dataset(inherit=False).copy(deep=False)
        dataset.attrs = clean(dataset.attrs)
        for variable in dataset.variables.values():
            variable.attrs = clean(variable.attrs)
        nodes[node.path] = dataset
    return xr.DataTree.from_dict(nodes)


def _netcdf_attribute(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iufU":
        return value
    if isinstance(value, list | tuple) and value:
        if all(isinstance(v, str) for v in value) or all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            return list(value)
    return json.dumps(value, default=str)


# --- reading ------------------------------------------------------------------


class ArchiveReader:
    """Reads entries of an open :class:`zipfile.ZipFile`; every failure is a FileFormatError."""

    def __init__(self, archive: zipfile.ZipFile, source: str) -> None:
        self.archive = archive
        self.source = source

    def damaged(self, detail: str) -> FileFormatError:
        return FileFormatError(
            f"{self.source} is not a readable bayesmix file: {detail}. It may be damaged or "
            "not written by bayesmix's save(); save the fit again."
        )

    def read_bytes(self, name: Any, limit: int | None = None) -> bytes:
        if not isinstance(name, str):
            raise self.damaged(f"an entry name should be text, got {name!r}")
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise self.damaged(f"the entry {name!r} is missing") from None
        if limit is not None and info.file_size > limit:
            raise self.damaged(f"the entry {name!r} is too large ({info.file_size} bytes)")
        try:
            return self.archive.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise self.damaged(f"the entry {name!r} cannot be read ({err})") from err

    def read_json(self, name: str) -> Any:
        data = self.read_bytes(name, limit=_MAX_METADATA)

        def refuse(token: str) -> None:
            raise ValueError(f"{token} is not JSON")

        try:
            return json.loads(data.decode("utf-8"), parse_constant=refuse)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise self.damaged(f"the entry {name!r} is not valid JSON ({err})") from err

    def read_array(self, name: Any) -> np.ndarray:
        data = self.read_bytes(name)
        try:
            # allow_pickle=False: an object array (the only kind needing pickle) is refused
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise self.damaged(f"the entry {name!r} is not a plain .npy array ({err})") from err

    def read_tree(self, name: Any) -> Any:
        import xarray as xr

        data = self.read_bytes(name)
        try:
            return xr.load_datatree(io.BytesIO(data), engine="h5netcdf")
        except Exception as err:  # h5py and xarray raise many types for a bad file
            raise self.damaged(f"the entry {name!r} is not a netCDF DataTree ({err})") from err

    def decode(self, value: Any, where: str, depth: int = 0) -> Any:
        """Inverse of :meth:`ArchiveWriter.encode`; refuses unknown tags."""
        if depth > _MAX_DEPTH:
            raise self.damaged(f"{where} is nested too deeply")
        if value is None or isinstance(value, bool | str | int):
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((tag, content),) = value.items()
            if tag == "array":
                return self.read_array(content)
            if tag == "float" and content in ("nan", "inf", "-inf"):
                return float(content)
            if tag in ("tuple", "list") and isinstance(content, list):
                items = [self.decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(content)]
                return tuple(items) if tag == "tuple" else items
            if tag == "dict" and isinstance(content, dict):
                return {k: self.decode(v, f"{where}.{k}", depth + 1) for k, v in content.items()}
        if isinstance(value, dict) and set(value) == {"scalar", "dtype"}:
            try:
                dtype = np.dtype(value["dtype"])
            except Exception:  # numpy raises several types for a bad dtype text
                dtype = None
            number = self.decode(value["scalar"], where, depth + 1)
            if dtype is not None and dtype.kind in _SCALAR_KINDS and _is_number(number):
                try:
                    return dtype.type(number)
                except (OverflowError, ValueError) as err:
                    raise self.damaged(f"{where} does not fit its dtype ({err})") from err
        raise self.damaged(f"{where} holds an unknown value {str(value)[:80]!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


# --- data frames --------------------------------------------------------------


def frame_entries(frame: pd.DataFrame, prefix: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Parquet entries of ``frame`` and their JSON description.

    Categorical columns are stored as int32 codes (-1 for missing) with their
    categories in ``<prefix>/categories/<k>.parquet`` and the ``ordered`` flag
    in the description, because Parquet loses non-text categoricals. Object
    columns are listed so that they are read back as object columns (missing
    values as ``None``), not as pandas' ``str`` dtype.
    """
    plain = frame.copy(deep=False)
    entries: dict[str, bytes] = {}
    categorical = []
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            entry = f"{prefix}/categories/{len(categorical)}.parquet"
            categories = pd.DataFrame({"categories": column.cat.categories})
            entries[entry] = _parquet(categories)
            categorical.append(
                {"column": name, "categories": entry, "ordered": bool(column.cat.ordered)}
            )
            plain[name] = column.cat.codes.astype(np.int32)
    entries[f"{prefix}/frame.parquet"] = _parquet(plain)
    # pandas >= 3 reads text back as its str dtype: object columns are named to restore them
    objects = [name for name in frame.columns if frame[name].dtype == object]
    description = {
        "frame": f"{prefix}/frame.parquet",
        "categorical": categorical,
        "object_columns": objects,
    }
    return entries, description


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow")
    return buffer.getvalue()


def read_frame(description: Any, read: Callable[[str], bytes], damaged: Callable) -> pd.DataFrame:
    """The frame described by :func:`frame_entries`; ``read(name)`` gives an entry's bytes."""
    if (
        not isinstance(description, dict)
        or not isinstance(description.get("categorical"), list)
        or not isinstance(description.get("object_columns"), list)
    ):
        raise damaged("the data description is malformed")
    frame = _read_parquet(read, description.get("frame"), damaged)
    for name in description["object_columns"]:
        if name not in frame.columns:
            raise damaged(f"the object column {str(name)[:80]!r} is not in the data")
        column = frame[name].astype(object)
        frame[name] = column.where(column.notna(), None)
    for spec in description["categorical"]:
        if not isinstance(spec, dict) or spec.get("column") not in frame.columns:
            raise damaged(f"the categorical column entry {str(spec)[:80]!r} is malformed")
        table = _read_parquet(read, spec.get("categories"), damaged)
        codes = frame[spec["column"]].to_numpy()
        if "categories" not in table or codes.dtype.kind not in "iu":
            raise damaged(f"the categories of column {spec['column']!r} are malformed")
        try:
            frame[spec["column"]] = pd.Categorical.from_codes(
                codes,
                categories=pd.Index(table["categories"]).rename(None),
                ordered=bool(spec.get("ordered")),
            )
        except (ValueError, TypeError) as err:
            raise damaged(f"the categorical column {spec['column']!r} is invalid ({err})") from err
    return frame


def _read_parquet(read: Callable[[str], bytes], name: Any, damaged: Callable) -> pd.DataFrame:
    data = read(name)
    try:
        # pyarrow >= 14.0.1 never unpickles extension types from a file (CVE-2023-47248)
        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as err:  # pyarrow raises many types for a bad file
        raise damaged(f"the entry {name!r} is not a Parquet table ({err})") from err


def storable_frame(
    frame: pd.DataFrame, needed: set[str]
) -> tuple[dict[str, bytes], dict[str, Any], list[str], pd.DataFrame]:
    """Entries for the columns of ``frame`` that survive a round trip exactly.

    A column that Parquet cannot hold, or would change (an object column mixing
    numbers and text, say), is left out when the model does not use it and
    refused with a :class:`~bayesmix.errors.DataError` when it does.

    Returns
    -------
    (entries, description, dropped column names, the frame as it will be read back)
    """
    if any(not isinstance(c, str) for c in frame.columns):
        raise DataError("the data's column names must be text to be saved; rename them.")
    dropped: list[str] = []
    for _ in range(3):  # a column found bad in one pass cannot make others bad
        kept = frame.drop(columns=dropped)
        try:
            entries, description = frame_entries(kept, "data")
            back = read_frame(description, entries.__getitem__, DataError)
            bad = [c for c in kept.columns if not same_column(kept[c], back[c])]
        except Exception:  # find the columns Parquet refuses, one by one
            bad = [c for c in kept.columns if not _column_survives(kept[[c]])]
            if not bad:
                raise
        if not bad:
            if not kept.index.equals(back.index) or kept.index.dtype != back.index.dtype:
                raise DataError(
                    "the data's index cannot be stored faithfully in Parquet; refit the "
                    "model on data.reset_index() (which keeps the index as a column)."
                )
            return entries, description, dropped, back
        used = sorted(set(bad) & needed)
        if used:
            raise DataError(
                f"the model's column(s) {', '.join(map(repr, used))} cannot be stored "
                "faithfully (Parquet changes or refuses their values, e.g. an object column "
                "mixing numbers and text); convert them (astype(float) or astype(str)), "
                "refit and save again."
            )
        dropped += bad
    raise DataError("the data could not be stored; save a model fitted on simpler columns.")


def _column_survives(part: pd.DataFrame) -> bool:
    try:
        entries, description = frame_entries(part, "data")
        back = read_frame(description, entries.__getitem__, DataError)
        return same_column(part.iloc[:, 0], back.iloc[:, 0])
    except Exception:  # refused by Parquet, or cells that cannot even be compared
        return False


def same_column(left: pd.Series, right: pd.Series) -> bool:
    """Same dtype, same missing cells and equal values of the same Python types."""
    if left.dtype != right.dtype or len(left) != len(right):
        return False
    if isinstance(left.dtype, pd.CategoricalDtype):
        same_levels = left.cat.categories.equals(right.cat.categories)
        return same_levels and np.array_equal(left.cat.codes, right.cat.codes)
    missing = left.isna().to_numpy()
    if not np.array_equal(missing, right.isna().to_numpy()):
        return False
    a, b = left[~missing].to_numpy(), right[~missing].to_numpy()
    if a.dtype == object:
        return all(type(x) is type(y) and x == y for x, y in zip(a, b))
    return bool(np.array_equal(a, b))
