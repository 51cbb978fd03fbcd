"""Where bayesmix keeps compiled models on disk, and how large that cache may grow.

bayesmix compiles each model's log density with PyTensor's numba backend.
PyTensor caches the compiled functions on disk (``.nbi`` index and ``.nbc``
data files) and bayesmix registers its own kernels and nutpie wrappers there
too (:mod:`bayesmix.bayes.likelihoods.numba_kernels`,
:mod:`bayesmix.bayes.compile.cfunc`), so a model compiled once loads in about a
second in a later process. This module owns that cache's location, its size
bound and its removal:

* Location: the directory named by the environment variable
  ``BAYESMIX_CACHE_DIR``, else the platform's user cache directory (from
  ``platformdirs``: ``~/.cache/bayesmix`` on Linux, ``~/Library/Caches/bayesmix``
  on macOS, ``%LOCALAPPDATA%\\bayesmix\\Cache`` on Windows). PyTensor's
  ``base_compiledir`` becomes ``<dir>/pytensor``: numba's files go to
  ``<dir>/pytensor/numba`` and PyTensor's generated sources (otherwise left in
  the system temporary directory for good) to ``<dir>/pytensor/src``.
* Fallback: when that directory cannot be written, a temporary directory
  serves the session (removed at exit) and a :class:`~bayesmix.errors.CacheWarning`
  names both directories and the environment variable.
* Bound: before each compilation, the oldest entries are removed until the
  cache holds at most ``BAYESMIX_CACHE_MAX_MB`` megabytes (default
  ``DEFAULT_MAX_MB`` = 500; 0 turns the bound off). :func:`clear_cache`
  removes every entry.

PyTensor reads its cache directory once, when it is imported. bayesmix sets
it through ``PYTENSOR_FLAGS`` when it gets there first, and otherwise points
the already imported PyTensor at it (see :func:`configure_pytensor`). A
``base_compiledir`` or ``compiledir`` the user set in ``PYTENSOR_FLAGS`` or a
``.pytensorrc`` is left alone: bayesmix then neither bounds nor clears
PyTensor's cache. One process has one PyTensor configuration, so PyTensor
functions of other code in a process that fits Bayesian models are cached in
bayesmix's directory as well.
"""

from __future__ import annotations

import atexit
import configparser
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bayesmix.errors import CacheWarning, FitError, warn

CACHE_DIR_ENV = "BAYESMIX_CACHE_DIR"
CACHE_MAX_MB_ENV = "BAYESMIX_CACHE_MAX_MB"
#: Default bound of the on-disk cache, in megabytes. A sleepstudy model takes
#: about 1.5 MB; models with large data compiled in take more.
DEFAULT_MAX_MB = 500.0

_PYTENSOR_KEYS = ("base_compiledir", "compiledir")
#: numba's files: ``<stem>.nbi`` (index), ``<stem>.<n>.nbc`` (data), and the
#: ``.tmp.<uid>`` names they are written through.
_NUMBA_FILE = re.compile(r"(?P<stem>.+?)\.(?:nbi|\d+\.nbc)(?:\.tmp\.[0-9a-f]+)?")
#: PyTensor's content-addressed generated sources, and their temporary names.
_SOURCE_FILE = re.compile(r"(?P<stem>m[0-9a-f]{64}\.py)(?:\..+\.tmp)?")


@dataclass(frozen=True)
class _State:
    directory: Path  # bayesmix's cache directory (the fallback, when used)
    managed: bool  # whether PyTensor's cache lives there (else its own or the user's place)


_STATE: _State | None = None
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ClearedCache:
    """What :func:`clear_cache` removed: ``n_files`` files (``n_bytes`` bytes) in ``directory``."""

    directory: Path
    n_files: int
    n_bytes: int
    paths: tuple[Path, ...] = field(repr=False, default=())

    def __str__(self) -> str:
        return f"removed {self.n_files} files ({self.n_bytes / 1e6:.1f} MB) from {self.directory}"


def _requested_dir() -> Path:
    """``BAYESMIX_CACHE_DIR``, else the platform's user cache directory."""
    value = os.environ.get(CACHE_DIR_ENV, "").strip()
    if value:
        return Path(value).expanduser().absolute()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs comes with nutpie; be safe without it
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base, "bayesmix").absolute()
    return Path(user_cache_dir("bayesmix", appauthor=False)).absolute()


def cache_dir() -> Path:
    """The directory of bayesmix's on-disk compile cache.

    Returns
    -------
    pathlib.Path
        ``BAYESMIX_CACHE_DIR`` or the platform's user cache directory; the
        temporary directory used instead when that one was not writable.
        PyTensor's files are under its ``pytensor`` subdirectory.
    """
    return _STATE.directory if _STATE is not None else _requested_dir()


def _unwritable(directory: Path) -> str | None:
    """Why files cannot be written in ``directory`` (created if need be), or None when they can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:  # permission bits, a file in the way, a read-only mount
        return err.strerror or str(err)
    return None


def _user_flags() -> dict[str, str]:
    """Settings from ``PYTENSOR_FLAGS`` and ``.pytensorrc`` files, read as PyTensor reads them."""
    found: dict[str, str] = {}
    rc_files = os.environ.get("PYTENSORRC", "~/.pytensorrc").split(os.pathsep)
    parser = configparser.RawConfigParser()
    parser.read([Path(name).expanduser() for name in rc_files])
    for key in (*_PYTENSOR_KEYS, "generated_src_dir"):
        if parser.has_option("global", key):
            found[key] = parser.get("global", key)
    splitter = shlex.shlex(os.environ.get("PYTENSOR_FLAGS", ""), posix=True)
    splitter.whitespace, splitter.whitespace_split = ",", True
    for pair in splitter:
        key, sep, value = pair.strip().partition("=")
        if sep:
            found[key] = value
    return found


def _quoted(path: Path) -> str:
    """``path`` as a ``PYTENSOR_FLAGS`` value (PyTensor splits the flags on commas)."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set_flags(base: Path, user: dict[str, str]) -> None:
    """Add ``base_compiledir`` (and ``generated_src_dir``) to ``PYTENSOR_FLAGS``.

    Child processes (PyMC's samplers, multiprocessing) inherit the setting.
    """
    if user.get("base_compiledir") == str(base):  # set already (by a parent process)
        return
    flags = [os.environ.get("PYTENSOR_FLAGS", "").strip(" ,")]
    flags.append(f"base_compiledir={_quoted(base)}")
    if "generated_src_dir" not in user:
        flags.append(f"generated_src_dir={_quoted(base / 'src')}")
    os.environ["PYTENSOR_FLAGS"] = ",".join(flag for flag in flags if flag)


def _redirect_imported_pytensor(base: Path, user: dict[str, str]) -> bool:
    """Point an already imported PyTensor's numba cache at ``base``; False where it cannot be done.

    PyTensor offers no public way to move its cache after import:
    ``base_compiledir`` refuses a new value once read (at import), and the numba
    cache module fixes its directory when it is imported. Before that module is
    imported, the stored value is replaced; after, the module's directory
    attribute, which its cache locator reads at every lookup.
    """
    import pytensor

    config = pytensor.config
    numba_cache = sys.modules.get("pytensor.link.numba.cache")
    try:
        if numba_cache is not None:
            if not hasattr(numba_cache, "NUMBA_CACHE_PATH"):
                return False
            numba_cache.NUMBA_CACHE_PATH = base / "numba"
        else:
            param = config._config_var_dict["base_compiledir"]
            param.val = base
            if Path(config.base_compiledir) != base:
                return False
        if "generated_src_dir" not in user:
            config.generated_src_dir = str(base / "src")  # a mutable setting
    except (AttributeError, KeyError, TypeError, ValueError):  # PyTensor's internals moved
        return False
    return True


def _fallback(requested: Path, reason: str) -> Path:
    """A temporary cache directory for this session, announced by a warning."""
    try:
        directory = Path(tempfile.mkdtemp(prefix="bayesmix-cache-"))
    except OSError as err:
        raise FitError(
            f"bayesmix cannot write its compile cache to '{requested}' ({reason}) nor to a "
            f"temporary directory ({err}); set the environment variable {CACHE_DIR_ENV} "
            "to a writable directory."
        ) from err
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    warn(
        f"bayesmix cannot write its compile cache to '{requested}' ({reason}); compiled "
        f"models go to the temporary directory '{directory}' for this session (removed at "
        "exit), so a new session compiles them again. Set the environment variable "
        f"{CACHE_DIR_ENV} to a writable directory to keep them.",
        CacheWarning,
    )
    return directory


def configure_pytensor() -> None:
    """Choose the cache directory and point PyTensor at it (once per process; internal).

    Called before bayesmix first imports PyTensor's numba backend and before
    each compilation. Best called before PyTensor is imported at all: the
    directory then reaches PyTensor through ``PYTENSOR_FLAGS``, its public
    route. A ``base_compiledir`` or ``compiledir`` the user set is left alone.

    Raises
    ------
    FitError
        When neither the cache directory nor a temporary one can be written,
        or an already imported PyTensor cannot be moved off an unwritable one.
    """
    global _STATE
    with _LOCK:
        if _STATE is not None:
            return
        requested = _requested_dir()
        user = _user_flags()
        # a value equal to bayesmix's own was inherited from a parent process
        own = str(requested / "pytensor")
        if any(user.get(key) not in (None, own) for key in _PYTENSOR_KEYS):
            _STATE = _State(requested, managed=False)  # the user's choice
            return
        reason = _unwritable(requested / "pytensor" / "numba")
        directory = requested if reason is None else _fallback(requested, reason)
        base = directory / "pytensor"
        imported = "pytensor" in sys.modules
        _set_flags(base, user)  # for child processes, and for PyTensor when not yet imported
        if imported and not _redirect_imported_pytensor(base, user):
            _check_pytensor_default()
            _STATE = _State(directory, managed=False)  # PyTensor keeps its own directory
            return
        _STATE = _State(directory, managed=True)


def _check_pytensor_default() -> None:
    """Fail clearly where PyTensor keeps its own cache directory and cannot write there."""
    import pytensor

    base = Path(pytensor.config.base_compiledir)
    reason = _unwritable(base / "numba")
    if reason is not None:
        raise FitError(
            f"PyTensor's compile cache '{base}' is not writable ({reason}), and PyTensor was "
            "imported before bayesmix could move it. Set the environment variable "
            f"{CACHE_DIR_ENV} (or PYTENSOR_FLAGS=base_compiledir=...) to a writable "
            "directory before importing PyMC or PyTensor."
        )


def _entries(root: Path) -> list[tuple[float, list[tuple[Path, int]]]]:
    """The cache entries under ``root``: (last written, [(file, bytes)], index files first)."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for sub, pattern in (("numba", _NUMBA_FILE), ("src", _SOURCE_FILE)):
        try:
            children = list((root / "pytensor" / sub).iterdir())
        except OSError:  # no cache yet
            continue
        for path in children:
            match = pattern.fullmatch(path.name)
            if match is not None:
                groups.setdefault((sub, match["stem"]), []).append(path)
    entries = []
    for paths in groups.values():
        # the index first: a reader then never finds an index without its data
        paths.sort(key=lambda path: not path.name.endswith(".nbi"))
        files, newest = [], 0.0
        for path in paths:
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile by another process
                continue
            files.append((path, stat.st_size))
            newest = max(newest, stat.st_mtime)
        if files:
            entries.append((newest, files))
    return entries


def _prune(root: Path, max_bytes: int) -> list[tuple[Path, int]]:
    """Remove the oldest entries under ``root`` beyond ``max_bytes``; the files removed, sized."""
    entries = sorted(_entries(root), key=lambda entry: entry[0])
    total = sum(size for _, files in entries for _, size in files)
    removed = []
    for _, files in entries:
        if total <= max_bytes:
            break
        for path, size in files:
            try:
                path.unlink()
                removed.append((path, size))
            except FileNotFoundError:  # another process removed it
                pass
            total -= size
    return removed


def prune_cache(root: Path, max_bytes: int) -> list[Path]:
    """Remove the least recently written cache entries under ``root`` beyond ``max_bytes``.

    An entry is one compiled function (its numba index and data files) or one
    generated source file. Directories are kept: PyTensor creates them only
    once per process. Age is the time an entry was last written (numba does
    not mark a cache entry when it loads it).

    Parameters
    ----------
    root : pathlib.Path
        A bayesmix cache directory (PyTensor's files under ``root/pytensor``).
    max_bytes : int
        Size to prune down to; 0 removes everything.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    return [path for path, _ in _prune(root, max_bytes)]


def _max_bytes() -> int | None:
    """The bound from ``BAYESMIX_CACHE_MAX_MB`` (default ``DEFAULT_MAX_MB``); None: no bound."""
    value = os.environ.get(CACHE_MAX_MB_ENV, "").strip()
    megabytes = DEFAULT_MAX_MB
    if value:
        try:
            megabytes = float(value)
        except ValueError:
            warn(
                f"{CACHE_MAX_MB_ENV}={value!r} is not a number of megabytes; bayesmix "
                f"bounds its compile cache at {DEFAULT_MAX_MB:g} MB instead.",
                CacheWarning,
            )
    return int(megabytes * 1e6) if megabytes > 0 else None


def before_compile() -> None:
    """Configure the cache and keep it within its bound (called before each compilation)."""
    configure_pytensor()
    limit = _max_bytes()
    if _STATE is not None and _STATE.managed and limit is not None:
        prune_cache(_STATE.directory, limit)


def clear_cache() -> ClearedCache:
    """Remove bayesmix's on-disk compile cache.

    Models are compiled again on their next fit; compiled models held in
    memory keep working. A PyTensor cache directory the user chose through
    ``PYTENSOR_FLAGS`` or ``.pytensorrc`` is not touched.

    Returns
    -------
    ClearedCache
        The directory, and the number of files and bytes removed.
    """
    directory = cache_dir()
    removed = _prune(directory, 0)
    return ClearedCache(
        directory=directory,
        n_files=len(removed),
        n_bytes=sum(size for _, size in removed),
        paths=tuple(path for path, _ in removed),
    )
