"""The on-disk compile cache (bayesmix.bayes.compile.cache) and the in-process compiled models.

Two subprocesses fit the same tiny model (sleepstudy, random intercepts), run
side by side: one with ``BAYESMIX_CACHE_DIR`` set to a fresh directory, one
whose home directory lies under a regular file, so that the default cache
directory cannot be created (the tests run as root, which permission bits do
not stop). The first also fits it with its own compiled log density
(``compile="cfunc"``), whose files and in-process entry are checked too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from bayesmix.bayes.compile import cache
from bayesmix.errors import CacheWarning

ROOT = Path(__file__).parents[1]

FIT = """
import gc, json, os, sys, warnings, weakref
from pathlib import Path
import bayesmix as bmx
from bayesmix.bayes.compile import cache
from bayesmix.bayes.compile import nutpie as nutpie_compile

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = bmx.lmm("Reaction ~ Days + (1|Subject)", bmx.load_dataset("sleepstudy"))
    result = model.sample(draws=50, tune=50, chains=1, random_seed=1)  # the generic kernel
    if sys.argv[1] == "full":  # and the model's own compiled log density
        from bayesmix.bayes.fit import sample_model

        own = sample_model(model.design, draws=50, tune=50, chains=1, compile="cfunc")
out = {
    "warnings": [[type(w.message).__name__, str(w.message)] for w in caught],
    "cache_dir": str(cache.cache_dir()),
    "draws": int(result.idata["posterior"].sizes["draw"]),
}
if sys.argv[1] == "full":
    numba_dir = cache.cache_dir() / "pytensor" / "numba"
    files = [p for p in numba_dir.iterdir() if p.suffix in (".nbi", ".nbc")]
    out["numba_files"] = len(files)
    out["generic_files"] = len([p for p in files if "bayesmix-generic" in p.name])
    out["numba_bytes"] = sum(p.stat().st_size for p in files)
    out["sources"] = len(list((cache.cache_dir() / "pytensor" / "src").glob("m*.py")))
    out["home_files"] = [str(p) for p in Path(os.environ["HOME"]).rglob("*.nb[ic]")]
    out["tmp_files"] = sorted(os.listdir(os.environ["TMPDIR"]))
    entry = weakref.ref(next(iter(nutpie_compile._COMPILED.values())))
    out["held_before"] = len(nutpie_compile._COMPILED)
    del model, result, own
    gc.collect()
    out["held_after"] = len(nutpie_compile._COMPILED)
    out["entry_alive"] = entry() is not None
    cleared = cache.clear_cache()
    out["cleared"] = [str(cleared.directory), cleared.n_files, cleared.n_bytes, str(cleared)]
    out["left"] = len([p for p in numba_dir.iterdir() if p.suffix in (".nbi", ".nbc")])
print(json.dumps(out))
"""


def _environment(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no PyTensor settings of the user running the tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "XDG_CACHE_HOME")}
    env.pop("BAYESMIX_CACHE_DIR", None)
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(
        PYTENSORRC=str(tmp / "no-pytensorrc"),
        TMPDIR=str(tmp / "tmp"),
        MPLCONFIGDIR=str(tmp / "mpl"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def _output(fits: dict, name: str) -> dict:
    """What the subprocess ``name`` reported (each test fails on its own process only)."""
    returncode, stdout, stderr = fits[name]
    assert returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """Both fitting subprocesses, run at the same time: name -> (return code, stdout, stderr)."""
    tmp = tmp_path_factory.mktemp("cache")
    blocker = tmp / "regular-file"
    blocker.write_text("a file where a directory should be")
    runs = {
        "full": _environment(
            tmp / "set", BAYESMIX_CACHE_DIR=str(tmp / "set" / "cache"), HOME=str(tmp / "home")
        ),
        "fallback": _environment(tmp / "fallback", HOME=str(blocker / "home")),
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", FIT, name],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in runs.items()
    }
    finished = {name: (p, *p.communicate(timeout=600)) for name, p in processes.items()}
    return tmp, {name: (p.returncode, out, err) for name, (p, out, err) in finished.items()}


def test_unwritable_cache_dir_falls_back_with_a_warning(fits):
    tmp, runs = fits
    fallback = _output(runs, "fallback")
    assert fallback["draws"] == 50
    messages = [text for kind, text in fallback["warnings"] if kind == "CacheWarning"]
    assert len(messages) == 1, fallback["warnings"]
    default = tmp / "regular-file" / "home" / ".cache" / "bayesmix"
    assert f"'{default}'" in messages[0]
    assert "BAYESMIX_CACHE_DIR" in messages[0]
    temporary = Path(fallback["cache_dir"])
    assert temporary.parent == tmp / "fallback" / "tmp"
    assert str(temporary) in messages[0]
    assert not temporary.exists()  # removed when the session ended


def test_cache_dir_holds_the_compile_cache(fits):
    tmp, runs = fits
    full = _output(runs, "full")
    assert full["cache_dir"] == str(tmp / "set" / "cache")
    assert full["numba_files"] > 10 and full["numba_bytes"] > 100_000
    assert full["generic_files"] == 4  # the generic kernel's two callbacks: index and data
    assert full["sources"] > 0  # PyTensor's generated sources, not left in TMPDIR
    assert full["home_files"] == []  # nothing in ~/.pytensor
    assert full["tmp_files"] == []
    assert not [w for w in full["warnings"] if w[0] == "CacheWarning"]


def test_clear_cache_removes_and_reports(fits):
    tmp, runs = fits
    full = _output(runs, "full")
    directory, n_files, n_bytes, text = full["cleared"]
    assert directory == str(tmp / "set" / "cache")
    assert n_files > 0 and n_files >= full["numba_files"] + full["sources"]
    assert n_bytes >= full["numba_bytes"]
    assert full["left"] == 0
    assert text.startswith(f"removed {n_files} files") and directory in text


def test_compiled_model_released_with_its_last_result(fits):
    full = _output(fits[1], "full")
    assert full["held_before"] == 1
    assert full["held_after"] == 0
    assert not full["entry_alive"]


def _touch(path: Path, size: int, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


def test_prune_removes_oldest_entries_first(tmp_path):
    numba, src = tmp_path / "pytensor" / "numba", tmp_path / "pytensor" / "src"
    for age, stem in enumerate(["new", "middle", "old"]):
        _touch(numba / f"string.fn-{stem}_fastmath1.py312.nbi", 100, 1e9 - age * 1000)
        _touch(numba / f"string.fn-{stem}_fastmath1.py312.1.nbc", 900, 1e9 - age * 1000)
    # an entry's age is its newest file: "middle" was written again most recently
    _touch(numba / "string.fn-middle_fastmath1.py312.2.nbc", 1000, 1e9 + 10)
    source = src / f"m{'a' * 64}.py"
    _touch(source, 500, 1e9 - 5000)
    other = numba / "notes.txt"  # not a cache file: never counted nor removed
    _touch(other, 10_000, 0)

    removed = cache.prune_cache(tmp_path, 3000)  # total 4500: source (500) and "old" (1000) go
    assert sorted(p.name for p in removed) == sorted(
        [source.name, "string.fn-old_fastmath1.py312.nbi", "string.fn-old_fastmath1.py312.1.nbc"]
    )
    assert removed[-2].name.endswith(".nbi")  # an entry's index goes before its data
    left = sorted(p.name for p in numba.iterdir())
    assert len(left) == 6 and "notes.txt" in left
    assert cache.prune_cache(tmp_path, 3000) == []  # within the bound
    assert len(cache.prune_cache(tmp_path, 0)) == 5
    assert numba.is_dir() and src.is_dir()  # PyTensor creates them once per process


def test_size_bound_from_environment(monkeypatch):
    monkeypatch.delenv("BAYESMIX_CACHE_MAX_MB", raising=False)
    assert cache._max_bytes() == int(cache.DEFAULT_MAX_MB * 1e6)
    monkeypatch.setenv("BAYESMIX_CACHE_MAX_MB", "2.5")
    assert cache._max_bytes() == 2_500_000
    monkeypatch.setenv("BAYESMIX_CACHE_MAX_MB", "0")
    assert cache._max_bytes() is None
    monkeypatch.setenv("BAYESMIX_CACHE_MAX_MB", "lots")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache._max_bytes() == int(cache.DEFAULT_MAX_MB * 1e6)
    assert [w.category for w in caught] == [CacheWarning]
    assert "BAYESMIX_CACHE_MAX_MB" in str(caught[0].message)


CONFIGURE = """
import json, os, sys
from bayesmix.bayes.compile import cache
cache.configure_pytensor()
assert "pytensor" not in sys.modules
import pytensor
print(json.dumps([str(pytensor.config.base_compiledir), os.path.isdir(sys.argv[1])]))
"""


@pytest.mark.parametrize("user_flags", [False, True])
def test_pytensor_configured_before_import_unless_user_chose(tmp_path, user_flags):
    """bayesmix sets PyTensor's directory through PYTENSOR_FLAGS, and respects the user's."""
    bayesmix_dir, user_dir = tmp_path / "bayesmix", tmp_path / "user"
    env = _environment(tmp_path, BAYESMIX_CACHE_DIR=str(bayesmix_dir))
    if user_flags:
        env["PYTENSOR_FLAGS"] = f"floatX=float64,base_compiledir={user_dir}"
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURE, str(bayesmix_dir)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    base, created = json.loads(done.stdout.strip().splitlines()[-1])
    if user_flags:
        assert base == str(user_dir) and not created
    else:
        assert base == str(bayesmix_dir / "pytensor") and created
