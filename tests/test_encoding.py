"""Error encodings: ternary (three threshold rules), sign, bit-plane; scale restoration and decoding."""

from __future__ import annotations

import pytest
import torch

from optodfa.encoding import BitPlaneEncoding, SignEncoding, TernaryEncoding, make_encoding

E = torch.tensor([[0.1, -0.9, 0.3, 0.05], [0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, -0.2]], dtype=torch.float64)


@pytest.mark.parametrize(("encoding", "code"), [
    (TernaryEncoding(0.25, "max"), [[0, -1, 1, 0], [0, 0, 0, 0], [1, -1, 0, 0]]),
    (TernaryEncoding(0.2, "fixed"), [[0, -1, 1, 0], [0, 0, 0, 0], [1, -1, 1, 0]]),  # strict: |-0.2| is not > 0.2
    # std of row 0 is 0.378 and of row 2 is 1.08: thresholds 0.378 and 1.08
    (TernaryEncoding(1.0, "std"), [[0, -1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]),
    (SignEncoding(), [[1, -1, 1, 1], [1, 1, 1, 1], [1, -1, 1, -1]]),
])
def test_single_plane_codes(encoding, code):
    encoded = encoding.encode(E)
    assert encoded.planes.shape == (1, 3, 4) and encoded.weights == (1.0,)
    assert encoded.code().tolist() == code


def test_scale_is_the_least_squares_fit_of_e_by_its_code():
    for encoding in (TernaryEncoding(), SignEncoding(), BitPlaneEncoding(3)):
        encoded = encoding.encode(E)
        t = encoded.code()
        expected = (E * t).sum(1) / (t * t).sum(1)
        expected[1] = 0.0 if encoding.name != "sign" else expected[1]
        torch.testing.assert_close(encoded.scale, torch.nan_to_num(expected), rtol=1e-12, atol=0)
        # Least squares: no other multiple of t is closer to e.
        residual = (E - encoded.value()).norm(dim=1)
        for factor in (0.9, 1.1):
            assert bool((residual <= (E - factor * encoded.value()).norm(dim=1) + 1e-12).all())
    assert TernaryEncoding().encode(E).value()[1].abs().sum() == 0  # a zero error projects to zero


@pytest.mark.parametrize("bits", [1, 3, 6])
def test_bitplanes_are_ternary_and_recombine_to_the_quantised_error(bits):
    e = torch.randn(50, 12, generator=torch.Generator().manual_seed(bits), dtype=torch.float64)
    encoded = BitPlaneEncoding(bits).encode(e)
    assert encoded.planes.shape == (bits, 50, 12)
    assert set(encoded.planes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert encoded.weights == tuple(2.0**k for k in range(bits - 1, -1, -1))
    peak = e.abs().amax(1, keepdim=True)
    levels = (e.abs() / peak * (2**bits - 1)).round()
    torch.testing.assert_close(encoded.code(), torch.sign(e) * levels, rtol=0, atol=0)
    # Quantisation error: at most half a level per entry before the least-squares rescale, which can only help.
    bound = (peak[:, 0] / (2**bits - 1) / 2) * 12**0.5
    assert bool(((e - encoded.value()).norm(dim=1) <= bound + 1e-12).all())


def test_decode_of_linear_projections_is_the_projection_of_the_quantised_error():
    e = torch.randn(20, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    matrix = torch.randn(30, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for encoding in (TernaryEncoding(0.3, "std"), SignEncoding(), BitPlaneEncoding(5)):
        encoded = encoding.encode(e)
        projected = encoded.planes @ matrix.T  # (p, n, D): what a linear device returns per plane
        torch.testing.assert_close(encoding.decode(projected, encoded), encoded.value() @ matrix.T,
                                   rtol=1e-12, atol=1e-12)


def test_plane_factors_then_sum_of_planes_is_decode():
    e = torch.randn(20, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    matrix = torch.randn(30, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for encoding in (TernaryEncoding(0.3, "std"), SignEncoding(), BitPlaneEncoding(5)):
        encoded = encoding.encode(e)
        projected = encoded.planes @ matrix.T
        p, n, big_d = projected.shape
        factors = encoding.plane_factors(encoded)
        assert factors.shape == (p * n,)
        folded = (projected.reshape(p * n, big_d) * factors[:, None]).view(p, n, big_d)
        torch.testing.assert_close(encoding.sum_planes(folded), encoding.decode(projected.clone(), encoded),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: TernaryEncoding(0.5, "median"), ValueError, "encoding.rule must be one of 'fixed', 'max', 'std'"),
    (lambda: TernaryEncoding(1.0, "max"), ValueError, r"encoding.threshold must be a finite real number in \[0, 1\)"),
    (lambda: TernaryEncoding(-0.1, "fixed"), ValueError, r"encoding.threshold must be .* in \[0, inf\), got -0.1"),
    (lambda: BitPlaneEncoding(0), ValueError, r"encoding.bits must be an integer in \[1, 16\], got 0"),
    (lambda: BitPlaneEncoding(17), ValueError, r"encoding.bits must be an integer in \[1, 16\], got 17"),
    (lambda: make_encoding("gray"), ValueError, "encoding.kind must be one of 'ternary', 'sign', 'bitplane'"),
    (lambda: make_encoding("sign", bits=3), KeyError, r"unknown key\(s\) 'bits' in parameters of encoding 'sign'"),
])
def test_bad_encodings(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_make_encoding_by_name():
    assert make_encoding("bitplane", bits=4).planes == 4
    assert make_encoding("ternary", threshold=0.1, rule="fixed").describe() == {
        "kind": "ternary", "planes": 1, "threshold": 0.1, "rule": "fixed"}
