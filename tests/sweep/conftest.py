"""A real LocalCluster of two worker processes, shared by the sweep tests of one pytest process."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed", reason="sweeps on workers need the dist extra")
    from optodfa.sweep.execute import THREAD_ENV

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR, env=THREAD_ENV)
    active = distributed.Client(cluster)
    import sweep_helpers

    active.run(sweep_helpers.warm_up)
    yield active
    active.close()
    cluster.close()

