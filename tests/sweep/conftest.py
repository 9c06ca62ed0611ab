"""A real LocalCluster of two worker processes, shared by the sweep tests of one pytest process."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed", reason="sweeps on workers need the dist extra")
    from optodfa.sweep.execute import local_cluster

    cluster = local_cluster(2)
    active = distributed.Client(cluster)
    import sweep_helpers

    active.run(sweep_helpers.warm_up)
    yield active
    active.close()
    cluster.close()

