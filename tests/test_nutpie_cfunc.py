"""The disk-cacheable C log density handed to nutpie (``bayesmix.bayes.compile.cfunc``).

The C functions are called here through ctypes, exactly as nutpie calls them,
and compared with PyMC's own log density and gradient (Python linker).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bayesmix as bmx
from bayesmix.spec.design import build_design

pytest.importorskip("nutpie")

from bayesmix.bayes.compile.cfunc import compile_cached_cfunc  # noqa: E402
from bayesmix.bayes.compile.nutpie import _initial_point_fn  # noqa: E402
from bayesmix.bayes.model import build_pymc_model  # noqa: E402

DOUBLE_P = ctypes.POINTER(ctypes.c_double)
UINT64_P = ctypes.POINTER(ctypes.c_uint64)


@pytest.fixture(scope="module")
def compiled_sleep():
    design = build_design("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))
    model = build_pymc_model(design)
    return model, compile_cached_cfunc(model, _initial_point_fn(model))


def _call_logp(compiled, x):
    """(return code, logp, gradient) from the C function, called as nutpie calls it."""
    x = np.ascontiguousarray(x, dtype=float)
    grad = np.zeros_like(x)
    logp = np.zeros(1)
    code = compiled.compiled_logp_func.ctypes(
        x.size,
        x.ctypes.data_as(DOUBLE_P),
        grad.ctypes.data_as(DOUBLE_P),
        logp.ctypes.data_as(DOUBLE_P),
        compiled.user_data.ctypes.data_as(UINT64_P),
    )
    return code, logp[0], grad


def _pymc_logp(model, compiled, x):
    """PyMC's log density and gradient at the flat point ``x`` (nutpie's layout)."""
    names, slices, shapes = compiled.shape_info
    n_free = len(model.free_RVs)
    point = {
        name: x[slc].reshape(shape)
        for name, slc, shape in list(zip(names, slices, shapes, strict=True))[:n_free]
    }
    logp = model.compile_logp(mode="FAST_COMPILE")(point)
    grad = model.compile_dlogp(mode="FAST_COMPILE")(point)
    return float(logp), np.asarray(grad)


def test_logp_and_gradient_match_pymc(compiled_sleep):
    model, compiled = compiled_sleep
    rng = np.random.default_rng(3)
    x = compiled.initial_point_func(1) + 0.3 * rng.standard_normal(compiled.n_dim)
    code, logp, grad = _call_logp(compiled, x)
    expected_logp, expected_grad = _pymc_logp(model, compiled, x)
    assert code == 0
    np.testing.assert_allclose(logp, expected_logp, rtol=1e-10)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-8)


def test_with_data_swaps_prior_parameters(compiled_sleep):
    """New prior values reach the C function through nutpie's user-data record."""
    model, compiled = compiled_sleep
    hyper = model["hyper"]
    old = np.asarray(hyper.get_value()).copy()
    new = old * 1.5  # scales, locations and LKJ eta all change
    x = compiled.initial_point_func(2)
    swapped = compiled.with_data(hyper=new)
    code, logp, grad = _call_logp(swapped, x)
    try:
        model.set_data("hyper", new)
        expected_logp, expected_grad = _pymc_logp(model, compiled, x)
    finally:
        model.set_data("hyper", old)
    assert code == 0
    np.testing.assert_allclose(logp, expected_logp, rtol=1e-10)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-8)
    assert abs(logp - _call_logp(compiled, x)[1]) > 1e-3  # the original is untouched


def test_non_finite_density_is_reported(compiled_sleep):
    """nutpie treats return codes 3 and 4 as a diverging point instead of using the values."""
    _, compiled = compiled_sleep
    x = compiled.initial_point_func(3)
    x[:] = 1e6
    code, _, _ = _call_logp(compiled, x)
    assert code in (3, 4)


def test_expand_returns_constrained_values(compiled_sleep):
    model, compiled = compiled_sleep
    x = compiled.initial_point_func(4)
    out = np.zeros(compiled.n_expanded)
    code = compiled.compiled_expand_func.ctypes(
        compiled.n_dim,
        compiled.n_expanded,
        x.ctypes.data_as(DOUBLE_P),
        out.ctypes.data_as(DOUBLE_P),
        compiled.user_data.ctypes.data_as(UINT64_P),
    )
    assert code == 0
    names, slices, _ = compiled.shape_info
    values = {name: out[slc] for name, slc in zip(names, slices, strict=True)}
    np.testing.assert_allclose(values["sigma"], np.exp(values["sigma_log__"]), rtol=1e-12)
    np.testing.assert_allclose(values["z0_Subject"], x[slices[names.index("z0_Subject")]])


def test_second_process_loads_the_wrapper_from_disk(tmp_path):
    """A re-run script finds the compiled C functions in PyTensor's numba cache."""
    script = textwrap.dedent(
        """
        import bayesmix as bmx
        from bayesmix.bayes.model import build_pymc_model
        from bayesmix.spec.design import build_design
        from bayesmix.bayes.compile.cfunc import compile_cached_cfunc
        from bayesmix.bayes.compile.nutpie import _initial_point_fn
        design = build_design("Reaction ~ 1 + (1 | Subject)", bmx.load_dataset("sleepstudy"))
        model = build_pymc_model(design)
        compiled = compile_cached_cfunc(model, _initial_point_fn(model))
        print(compiled.compiled_logp_func.cache_hits, compiled.compiled_expand_func.cache_hits)
        """
    )
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={tmp_path}")
    hits = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        hits.append(run.stdout.split()[-2:])
    assert hits == [["0", "0"], ["1", "1"]]
