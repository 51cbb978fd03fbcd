"""Replicates on Dask: same results for a seed however the work is split.

Starts two local clusters of 2 worker processes in all (a few seconds each): one
module-wide client passed as ``client=``, and one ``client=None`` run.
"""

import os
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from bayesmix.errors import ArgumentError, FitError  # noqa: E402
from bayesmix.inference.distributed import ReplicateRun, run_replicates  # noqa: E402


def normal_task(indices, seeds):
    """One standard normal draw per replicate, a little slow like a refit."""
    time.sleep(0.002 * len(indices))
    return [np.random.default_rng(seed).normal() for seed in seeds]


def failing_task(indices, seeds):
    if 10 in indices:
        raise ValueError("singular design")
    return normal_task(indices, seeds)


@pytest.fixture(scope="module")
def client():
    # Dask's nannies write OMP_NUM_THREADS=1 and more into os.environ: undo it for later tests
    environ = dict(os.environ)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
    os.environ.clear()
    os.environ.update(environ)


def draws(**kwargs):
    kwargs.setdefault("progress", False)
    return np.array(run_replicates(normal_task, 40, 7, **kwargs).results)


def test_results_do_not_depend_on_the_split(client):
    expected = draws(client="sync")
    assert len(expected) == 40
    assert np.array_equal(draws(client="sync", batch_size=3), expected)
    assert np.array_equal(draws(workers=0, batch_size=40), expected)
    assert np.array_equal(draws(client=client), expected)
    assert np.array_equal(draws(client=client, batch_size=1), expected)
    assert np.array_equal(draws(client=client, batch_size=7), expected)
    # replicate i is child i of the seed's spawn, whoever computes it
    children = np.random.SeedSequence(7).spawn(40)
    assert expected[13] == np.random.default_rng(children[13]).normal()


def test_default_local_cluster(capsys, monkeypatch):
    for name in ("OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED"):
        monkeypatch.delenv(name, raising=False)  # as before any cluster started
    environ = dict(os.environ)
    run = run_replicates(normal_task, 12, 7, workers=2, progress=True)
    assert isinstance(run, ReplicateRun)
    assert (run.workers, run.batch_size) == (2, 2)  # 4 batches per worker
    assert np.array_equal(run.results, draws(client="sync")[:12])
    assert "12/12" in capsys.readouterr().err  # tqdm or the counter line
    assert dict(os.environ) == environ  # the nannies' OMP_NUM_THREADS=1... are undone


def test_seeds(client):
    other = run_replicates(normal_task, 40, 8, client="sync", progress=False).results
    assert not np.array_equal(draws(client="sync"), other)
    fresh = run_replicates(normal_task, 5, None, client=client, progress=False)
    again = run_replicates(normal_task, 5, fresh.seed_entropy, client="sync", progress=False)
    assert fresh.results == again.results
    # a SeedSequence is copied, not advanced: passing it again repeats the run
    root = np.random.SeedSequence(7)
    first = run_replicates(normal_task, 5, root, client="sync", progress=False).results
    second = run_replicates(normal_task, 5, root, client=client, progress=False).results
    assert first == second == draws(client="sync")[:5].tolist()


def test_user_client_is_left_open(client):
    run = run_replicates(normal_task, 8, 1, client=client, progress=False)
    assert run.workers == 2 and len(run.results) == 8
    assert client.status == "running"
    assert client.submit(sum, [1, 2]).result() == 3


@pytest.mark.parametrize("where", ["sync", "client"])
def test_a_failing_batch_names_its_replicates(client, where):
    target = "sync" if where == "sync" else client
    with pytest.raises(FitError, match=r"replicates 8\.\.11 failed: ValueError: singular design"):
        run_replicates(failing_task, 20, 1, client=target, batch_size=4, progress=False)
    if where == "client":  # the other batches were cancelled or finished; the client works
        assert client.submit(sum, [1]).result() == 1


def test_no_replicates(client):
    for target in ("sync", client):
        run = run_replicates(normal_task, 0, 1, client=target, progress=False)
        assert run.results == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": -1}, "n"),
        ({"n": 2.5}, "n"),
        ({"batch_size": 0}, "batch_size"),
        ({"workers": -1}, "workers"),
        ({"seed": "x"}, "seed"),
        ({"client": "threads"}, "client"),
        ({"client": "sync", "workers": 2}, "workers"),
    ],
)
def test_bad_arguments(kwargs, name):
    arguments = {"n": 4, "seed": 1, **kwargs}
    with pytest.raises(ArgumentError, match=name):
        run_replicates(normal_task, arguments.pop("n"), arguments.pop("seed"), **arguments)


def test_wrong_number_of_results():
    with pytest.raises(ArgumentError, match="task returned 1 results for the 2 replicates 0..1"):
        run_replicates(lambda i, s: [0.0], 4, 1, client="sync", batch_size=2, progress=False)
