"""Noise source: the CPU normal table, exact Poisson draws, reproducible and resumable state."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from optodfa.sim.noise import NoiseSource, normal_table


def test_table_normal_is_standard_normal():
    n = 200_000
    z = NoiseSource(seed=4).normal((n,)).double()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    # The table's CDF is within 1.1e-5 of Φ, far below what a KS test at this n resolves (~1/sqrt(n)).
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    assert float(normal_table().double().square().mean()) == pytest.approx(1.0, abs=1e-7)  # float32 entries


def test_poisson_draws_are_exact():
    rates = torch.full((100_000,), 3.5, dtype=torch.float64)
    draws = NoiseSource(seed=2).poisson(rates).numpy()
    assert (draws == draws.round()).all()
    observed = [(draws == k).sum() for k in range(10)] + [(draws >= 10).sum()]
    expected = [stats.poisson.pmf(k, 3.5) * draws.size for k in range(10)] + [stats.poisson.sf(9, 3.5) * draws.size]
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_same_seed_same_numbers_and_state_resumes():
    a, b = NoiseSource(seed=9), NoiseSource(seed=9)
    assert torch.equal(a.normal((5, 7)), b.normal((5, 7)))
    state = a.state_dict()
    expected = (a.normal((3,)), a.poisson(torch.full((4,), 2.0)))
    b.load_state_dict(state)
    assert torch.equal(b.normal((3,)), expected[0]) and torch.equal(b.poisson(torch.full((4,), 2.0)), expected[1])
    assert not torch.equal(NoiseSource(seed=9, labels=(1,)).normal((5,)), NoiseSource(seed=9).normal((5,)))


def test_state_of_another_backend_is_refused():
    with pytest.raises(ValueError, match="noise state is for the 'torch' back end but this source on cpu uses"):
        NoiseSource(seed=0).load_state_dict({"backend": "torch", "state": None})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none on this machine")
def test_cuda_source_draws_on_the_gpu():
    source = NoiseSource(seed=0, device="cuda")
    z = source.normal((1000,))
    assert z.device.type == "cuda" and source.exact_gaussian
    assert source.poisson(torch.full((10,), 3.0, device="cuda")).device.type == "cuda"
