"""Sampler defaults: ``target_accept`` from the number of free parameters, and progress.

Notation
--------
n_dim : the number of unconstrained values NUTS samples.
"""

from __future__ import annotations

import os
import sys

import numpy as np

#: Default ``target_accept`` for models with at most ``SMALL_MODEL_DIM`` free
#: parameters, and for larger ones. Small models have few groups, whose SDs the
#: data identify poorly: their heavy-tailed posteriors bend the geometry, and
#: Arabidopsis ``(nutrient | popu) + (nutrient | popu:gen)`` (79 parameters, 9
#: populations) diverged in 10 of 12 seeds at 0.8 and in none of 12 at 0.95, with
#: higher ESS (rstanarm defaults to 0.95 for ``stan_glmer`` for the same reason).
#: The smaller steps cost a second or less there; on a model with thousands of
#: group effects (InstEval: 4,134 parameters, many levels per factor) they would
#: cost minutes and the SDs are well identified, so it keeps NUTS's usual 0.8.
TARGET_ACCEPT_SMALL = 0.95
TARGET_ACCEPT_LARGE = 0.8
SMALL_MODEL_DIM = 1000


def default_target_accept(model) -> float:
    """``target_accept`` used when none is given (see ``TARGET_ACCEPT_SMALL``)."""
    n_dim = n_free_parameters(model)
    return TARGET_ACCEPT_SMALL if n_dim <= SMALL_MODEL_DIM else TARGET_ACCEPT_LARGE


def n_free_parameters(model) -> int:
    """Number of unconstrained values NUTS samples (the size of ``model.initial_point()``).

    ``initial_point()`` compiles a function with PyTensor's default linker,
    which in a fresh compile directory first builds its C lazylinker (0.8 s
    with gcc) only for a count. Here the shapes of the free variables on the
    sampler's (transformed) scale are evaluated by the pure-Python linker: the
    dims are shared variables, so their static shapes are unknown, but nothing
    needs compiling.
    """
    import pytensor
    from pytensor.compile.mode import Mode

    shapes = []
    for rv in model.free_RVs:
        transform = model.rvs_to_transforms.get(rv)
        # a transform may change the size (e.g. a simplex loses one value)
        value = transform.forward(rv, *rv.owner.inputs) if transform is not None else rv
        shapes.append(value.shape)
    if not shapes:
        return 0
    evaluate = pytensor.function([], shapes, mode=Mode(linker="py", optimizer="fast_compile"))
    return int(sum(np.prod(shape, dtype=int) for shape in evaluate()))


def interactive_session() -> bool:
    """A notebook, IPython or the Python prompt: not a script or a test run.

    Progress (a line while the model compiles, then the sampler's bar) is shown
    by default only here, where a silent pause of seconds reads as a hang.
    """
    if hasattr(sys, "ps1"):
        return True
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None


#: Environment variable that sets the default progress ("0" off, "1" on), e.g. for
#: notebooks executed to build documentation
PROGRESS_ENV = "BAYESMIX_PROGRESS"


def resolve_progress(progressbar: bool | None) -> bool:
    """``progressbar`` as given; ``None``: ``BAYESMIX_PROGRESS`` if set, else on in an
    interactive session only."""
    if progressbar is not None:
        return bool(progressbar)
    setting = os.environ.get(PROGRESS_ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    return interactive_session()


def announce_compile() -> None:
    """The line a user sees before the model compiles (progress on)."""
    sys.stderr.write(
        "bayesmix: preparing the model (compiled on a machine's first fit, ~10 s; "
        "loaded from the cache after that)...\n"
    )
    sys.stderr.flush()
