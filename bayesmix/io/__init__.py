"""Save fitted models to one file and load them back without running code from it.

::

    import bayesmix as bmx
    sleep = bmx.load_dataset("sleepstudy")
    fit = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep).fit()
    fit.save("sleep.bmx")
    same = bmx.load("sleep.bmx")          # in any later session, or another process

``save`` works for the four result classes (:class:`~bayesmix.ml.results.MLResult`,
:class:`~bayesmix.nonlinear.ml_results.NLMResult`, :class:`~bayesmix.bayes.results.BayesResult`,
:class:`~bayesmix.nonlinear.bayes_results.NLBayesResult`). ``load`` rebuilds the model
from its constructor arguments and data and restores the estimates (ML/REML)
or the posterior draws (Bayesian) as they were stored: nothing is refitted or
resampled, so ``summary()``, ``fixef()``, ``ranef()``, ``varcorr()`` and
``predict()`` give what they gave before saving (posterior predictive draws
given the same ``random_seed``).

Loading runs no code from the file: it holds JSON, ``.npy`` arrays read with
``allow_pickle=False``, Parquet tables and netCDF, never a pickle, and a file
that is not a bayesmix file, is damaged or has an unknown format version is
refused with :class:`FileFormatError`. Functions are code, so a model's
``functions=`` (linear) and Python ``mean=`` (nonlinear) are stored by name
only and must be passed again: ``bmx.load(path, functions={"logit": logit})``,
``bmx.load(path, mean=logistic)``. The rebuilt design is compared with arrays
stored at save time, so a different function, or data that changed after
fitting, is an error, not a silently different model.

Results also pickle (multiprocessing, joblib, ``copy.deepcopy``, Dask), but
**unpickling runs code from the pickle**: use ``save``/``load`` for files, and
unpickle only what you trust.

File format (version 1)
-----------------------
A zip archive (any name; ``.bmx`` suggested) with these entries::

    bayesmix.json                   metadata, UTF-8 strict JSON (below)
    data/frame.parquet              the model's data frame, its index included;
                                    categorical columns as int32 codes (-1: missing);
                                    object columns (listed) are read back as object
    data/categories/<k>.parquet     categories of the k-th categorical column, in
                                    order, as the single column "categories"
    model/<name>.npy                offset=/weights= arrays, array start values
    check/<name>.npy                design arrays compared after rebuilding: y, X,
                                    Z<i> and codes<i> per random block, offset,
                                    weights, covariate<i> and mean (nonlinear)
    result/estimates/<field>.npy    array fields of MLEstimates (ML/REML fits)
    result/history/<i>/<field>.npy  arrays of the i-th iteration (nonlinear ML)
    result/posterior.nc             the result's DataTree (posterior, sample_stats,
                                    observed_data, log_likelihood), netCDF-4 (Bayesian)

``.npy`` entries are numpy's format without pickled objects. The metadata::

    {"format": "bayesmix-fit", "format_version": 2, "bayesmix_version": "0.1.0",
     "result_class": "MLResult" | "GLMMResult" | "NLMResult" | "BayesResult"
                     | "GLMMBayesResult" | "StructuredBayesResult" | "NLBayesResult"
                     | "StructuredNLBayesResult",
     "model": {"class": "LinearMixedModel", "formula": ..., "offset": ...,
               "weights": ..., "functions": [names]}
           | {"class": "NonlinearMixedModel", "formula": ..., "params": {...},
              "cov": ..., "start": ..., "mean": name or null, "offset": ...,
              "weights": ...},
     "data": {"frame": entry, "categorical": [{"column", "categories": entry,
              "ordered"}], "object_columns": [names], "dropped_columns": [names]},
     "check": {"structure": {"fixed_terms", "blocks": [{"grouping", "terms",
               "levels", "covariance"}]}, "arrays": {name: entry}},
     "result": {"estimates": {field: value}}                     (MLResult)
             | {"estimates", "history": [{field: value}], "derivatives"}  (NLMResult)
             | {"posterior": entry, "priors": {key: {"family", "params"}},
                "sampler", "timing"}                             (Bayesian)}

A value is JSON (null, true/false, a number, text) or a one-key object for
what JSON lacks: ``{"array": entry}``, ``{"tuple": [values]}``,
``{"list": [values]}``, ``{"dict": {name: value}}``, ``{"float": "nan"}``
(or ``"inf"``, ``"-inf"``) and ``{"scalar": number, "dtype": "<f8"}`` for a
numpy scalar. An offset or weights column name is text; an array a
``{"array": ...}`` value.

Unused data columns that Parquet cannot store exactly are left out (with a
:class:`~bayesmix.errors.DataWarning`, listed in ``dropped_columns``); netCDF
attributes it cannot hold (booleans, dicts of sampler settings) are stored as
0/1 and JSON text, and ``None`` in a sampler's text arrays (divergence
messages) as empty text, or NaN when every entry is ``None``.
``format_version`` changes whenever a reader of the previous version could not
read a new file. Version 2 (R's contrasts and column names) reads version-1
files as the models they were saved with (:mod:`bayesmix.io.legacy`); other
versions are refused with a message that says which bayesmix reads them.

May import: everything below it (:mod:`bayesmix.spec`, the engines,
:mod:`bayesmix.model`, :mod:`bayesmix.nonlinear_model`); the results' ``save``
methods are the only callers from below.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

from bayesmix.errors import (
    ArgumentError,
    ComparisonError,
    DataError,
    DataWarning,
    FitError,
    FormulaError,
    PriorError,
    warn,
)
from bayesmix.io.archive import (
    ArchiveReader,
    ArchiveWriter,
    FileFormatError,
    read_frame,
    storable_frame,
)
from bayesmix.io.legacy import upgrade
from bayesmix.io.model import build_model, decode_model, encode_model, model_spec, needed_columns
from bayesmix.io.results import (
    compare_fingerprints,
    decode_result,
    encode_result,
    result_class,
    result_fingerprint,
)

__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "FileFormatError", "load", "save"]

#: Identifies a bayesmix save file (the ``format`` field of its metadata).
FORMAT_NAME = "bayesmix-fit"
#: Version of the file layout written by :func:`save`; :func:`load` reads only it.
FORMAT_VERSION = 2
#: Versions this bayesmix reads (older ones through :mod:`bayesmix.io.legacy`).
READABLE_VERSIONS = (1, 2)
METADATA = "bayesmix.json"
_RESULT_CLASSES = (
    "MLResult",
    "GLMMResult",
    "NLMResult",
    "BayesResult",
    "GLMMBayesResult",
    "StructuredBayesResult",
    "NLBayesResult",
    "StructuredNLBayesResult",
)


def save(result: Any, path: str | os.PathLike) -> None:
    """Write a fitted result to ``path`` as one file that :func:`load` reads back.

    Parameters
    ----------
    result : MLResult, NLMResult, BayesResult or NLBayesResult
    path : str or PathLike
        The file to write (replaced if it exists; written to a temporary file
        first, so a failed save leaves no partial file).

    Raises
    ------
    DataError
        When the model's data cannot be stored exactly, or no longer give the
        fitted design (the DataFrame was changed after fitting).
    ArgumentError
        When ``result`` is not a fitted bayesmix result.

    Warns
    -----
    DataWarning
        Unused data columns that cannot be stored exactly are left out.
    """
    kind = result_class(result)
    spec = model_spec(result)
    entries, description, dropped = _storable_data(result, spec)
    from bayesmix import __version__

    path = _checked_path(path, "save")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(directory):
        raise ArgumentError(
            f"save: {path!r} must be a file name in an existing directory "
            f"({'it is a directory' if os.path.isdir(path) else 'no such directory'})."
        )
    # written beside the target under a new name ("x" never opens an existing file) and
    # renamed when complete; open() rather than mkstemp keeps the usual file permissions
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    handle = open(temporary, "xb")  # closed by the with block below
    try:
        with handle, zipfile.ZipFile(handle, "w") as archive:
            writer = ArchiveWriter(archive)
            for name, data in entries.items():
                writer.add_bytes(name, data)
            structure, arrays = result_fingerprint(result)
            metadata = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "bayesmix_version": __version__,
                "result_class": kind,
                "model": encode_model(writer, spec),
                "data": {**description, "dropped_columns": dropped},
                "check": {
                    "structure": structure,
                    "arrays": {k: writer.add_array(f"check/{k}.npy", v) for k, v in arrays.items()},
                },
                "result": encode_result(writer, result, kind),
            }
            writer.add_json(METADATA, metadata)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _storable_data(result: Any, spec: Any) -> tuple[dict[str, bytes], dict[str, Any], list[str]]:
    """Entries of the model's data, checked to rebuild the fitted design."""
    entries, description, dropped, stored = storable_frame(spec.data, needed_columns(spec, result))
    if dropped:
        warn(
            f"the data column(s) {', '.join(map(repr, dropped))} cannot be stored exactly and "
            "the model does not use them; they are left out of the saved file.",
            DataWarning,
        )
    try:  # the file must rebuild this very design, so try it now rather than at load time
        rebuilt = result_fingerprint(result, build_model(spec, stored))
        difference = compare_fingerprints(result_fingerprint(result), rebuilt)
    except Exception as err:  # any failure means the file would not load
        difference = f"rebuilding the model fails ({type(err).__name__}: {err})"
    if difference is not None:
        raise DataError(
            f"the model's data no longer give the fitted model ({difference}); was the "
            "DataFrame changed after fitting? Refit the model and save again."
        )
    return entries, description, dropped


def load(
    path: str | os.PathLike,
    *,
    functions: Mapping[str, Callable] | None = None,
    mean: Callable[..., Any] | None = None,
) -> Any:
    """Read a result written by :func:`save` (``fit.save(path)``), running no code from it.

    Parameters
    ----------
    path : str or PathLike
    functions : dict, optional
        The ``functions=`` the linear model was built with (stored by name
        only): exactly the names the file lists.
    mean : callable, optional
        The Python mean function of a nonlinear model built with ``mean=``.

    Returns
    -------
    MLResult, NLMResult, BayesResult or NLBayesResult
        The class that was saved, with its model (``result.model``) rebuilt
        from the stored formula, options and data.

    Raises
    ------
    FileFormatError
        The file is not a bayesmix save file (a pickle, say), is damaged, was
        written in another format version, or its model cannot be rebuilt.
    ArgumentError
        ``functions``/``mean`` lack a function the model needs, give one it
        does not use, or compute other values than those it was fitted with.
    """
    source = _checked_path(path, "load")
    if not os.path.isfile(source):
        raise ArgumentError(f"load: {source!r} is not a file (no such file, or a directory).")
    try:
        return _load(source, functions, mean)
    except _OWN_ERRORS:
        raise
    except (RecursionError, ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        raise FileFormatError(
            f"{source} is damaged or was not written by bayesmix's save() "
            f"({type(err).__name__}: {str(err)[:200]})."
        ) from None


def _load(source: str, functions: Any, mean: Any) -> Any:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise FileFormatError(
            f"{source} is not a bayesmix file (not a zip archive): bayesmix.load reads only "
            "files written by save(). A pickle is not loaded, because unpickling runs code "
            "from the file; if you trust it, use pickle.load yourself."
        ) from err
    with archive:
        reader = ArchiveReader(archive, source)
        if METADATA not in archive.namelist():
            raise FileFormatError(
                f"{source} is a zip archive without {METADATA}, so not a bayesmix file; "
                "bayesmix.load reads only files written by save()."
            )
        meta = reader.read_json(METADATA)
        kind = _check_header(meta, source)
        data = _read_data(reader, meta.get("data"))
        meta = upgrade(meta, meta["format_version"], data)
        spec = decode_model(reader, meta.get("model"), data, functions, mean)
        try:
            model = build_model(spec)
        except ArgumentError:
            raise
        except Exception as err:  # a file whose model fails is unreadable
            raise FileFormatError(
                f"the model saved in {source} cannot be rebuilt ({type(err).__name__}: {err})."
            ) from err
        result = decode_result(reader, kind, meta.get("result"), model)
        _check_design(reader, meta.get("check"), result, spec, meta)
    return result


#: bayesmix's own errors pass through load unchanged; anything else means a damaged file
_OWN_ERRORS = (ArgumentError, ComparisonError, DataError, FitError, FormulaError, PriorError)


def _checked_path(path: Any, caller: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"{caller} takes a file path (str or PathLike), got {path!r}.")
    return os.fspath(path)


def _check_header(meta: Any, source: str) -> str:
    """The result class of a file whose format and version this bayesmix reads."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise FileFormatError(
            f"{source} is not a bayesmix file (its {METADATA} does not name the format "
            f"{FORMAT_NAME!r}); bayesmix.load reads only files written by save()."
        )
    version, writer = meta.get("format_version"), meta.get("bayesmix_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FileFormatError(f"{source} has no valid format_version; save the fit again.")
    if version not in READABLE_VERSIONS:
        advice = (
            "upgrade bayesmix (pip install -U bayesmix)"
            if version > FORMAT_VERSION
            else f"load it with bayesmix {writer}, which wrote it, and refit or save it anew"
        )
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise FileFormatError(
            f"{source} has file format version {version} (written by bayesmix {writer}); "
            f"this bayesmix reads versions {readable}: {advice}."
        )
    kind = meta.get("result_class")
    if kind not in _RESULT_CLASSES:
        raise FileFormatError(f"{source} holds an unknown result class {str(kind)[:40]!r}.")
    return kind


def _read_data(reader: ArchiveReader, meta: Any) -> Any:
    return read_frame(meta, reader.read_bytes, reader.damaged)


def _check_design(reader: ArchiveReader, meta: Any, result: Any, spec: Any, top: dict) -> None:
    """Compare the rebuilt design with the arrays stored at save time."""
    if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), dict):
        raise reader.damaged("the design check is malformed")
    stored = (meta.get("structure"), {k: reader.read_array(v) for k, v in meta["arrays"].items()})
    difference = compare_fingerprints(stored, result_fingerprint(result))
    if difference is None:
        return
    if spec.functions or spec.mean is not None:
        given = "functions=" if spec.functions else "mean="
        raise ArgumentError(
            f"the model rebuilt with the {given} you passed is not the saved one "
            f"({difference}); pass the same function(s) the model was fitted with."
        )
    raise FileFormatError(
        f"the data in {reader.source} do not rebuild the saved model ({difference}). The file "
        f"was written by bayesmix {top.get('bayesmix_version')}; load it with that version."
    )
