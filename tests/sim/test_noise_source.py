"""Noise source: the CPU normal table, both streams of table indices, exact Poisson draws, reproducible and
resumable state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from optodfa.sim.noise import STREAMS, NoiseSource, normal_table


@pytest.mark.parametrize("stream", STREAMS)
def test_table_normal_is_standard_normal(stream: str):
    n = 200_000
    z = NoiseSource(seed=4, stream=stream).normal((n,)).double()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    # The table's CDF is within 1.1e-5 of Φ, far below what a KS test at this n resolves (~1/sqrt(n)).
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    assert float(normal_table().double().square().mean()) == pytest.approx(1.0, abs=1e-7)  # float32 entries


@pytest.mark.parametrize("stream", STREAMS)
def test_table_indices_are_uniform_and_independent_within_and_across_words(stream: str):
    # 2^22 indices, 64 per table entry on average: a chi-square test of every entry, then of the joint top 4 bits
    # of neighbouring indices (lanes of one word, and the last lane of a word with the next word's first), 256
    # cells of 2^21 / 256 pairs each.
    bits = NoiseSource(seed=6, stream=stream).normal_bits(1 << 22).astype(np.int64)
    assert stats.chisquare(np.bincount(bits, minlength=1 << 16)).pvalue > 1e-3
    lanes = bits.reshape(-1, 4) >> 12
    for a, b in ((lanes[:, 0], lanes[:, 1]), (lanes[:, 1], lanes[:, 2]), (lanes[:, 2], lanes[:, 3]),
                 (lanes[:-1, 3], lanes[1:, 0])):
        assert stats.chisquare(np.bincount(a * 16 + b, minlength=256)).pvalue > 1e-3


def test_poisson_draws_are_exact():
    rates = torch.full((100_000,), 3.5, dtype=torch.float64)
    draws = NoiseSource(seed=2).poisson(rates).numpy()
    assert (draws == draws.round()).all()
    observed = [(draws == k).sum() for k in range(10)] + [(draws >= 10).sum()]
    expected = [stats.poisson.pmf(k, 3.5) * draws.size for k in range(10)] + [stats.poisson.sf(9, 3.5) * draws.size]
    assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("stream", STREAMS)
def test_same_seed_same_numbers_and_state_resumes(stream: str):
    a, b = NoiseSource(seed=9, stream=stream), NoiseSource(seed=9, stream=stream)
    assert torch.equal(a.normal((5, 7)), b.normal((5, 7)))
    state = a.state_dict()
    expected = (a.normal((3,)), a.poisson(torch.full((4,), 2.0)))
    b.load_state_dict(state)
    assert torch.equal(b.normal((3,)), expected[0]) and torch.equal(b.poisson(torch.full((4,), 2.0)), expected[1])
    assert not torch.equal(NoiseSource(seed=9, labels=(1,), stream=stream).normal((5,)),
                           NoiseSource(seed=9, stream=stream).normal((5,)))


def test_the_streams_differ_and_a_state_of_the_other_stream_is_refused_with_the_key_to_set():
    counter, sfc64 = NoiseSource(seed=9), NoiseSource(seed=9, stream="sfc64")
    assert not np.array_equal(counter.normal_bits(8), sfc64.normal_bits(8))
    with pytest.raises(ValueError, match=r"'sfc64' stream but this source draws the 'counter' stream; set the "
                                         r"profile key noise.stream = 'sfc64'"):
        counter.load_state_dict(sfc64.state_dict())
    with pytest.raises(ValueError, match=r"noise.stream must be one of"):
        NoiseSource(seed=9, stream="mt19937")


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
