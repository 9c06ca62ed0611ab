"""Feedback fidelity: the metrics on known cases, the targets, the best-linear-fit rule, the report and the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from optodfa.cli import main
from optodfa.device import Projector
from optodfa.fidelity import enob, feedback_fidelity, fidelity, fidelity_report, measure_fidelity
from optodfa.registry import build_projector


class NoisyLinear(Projector):
    """``e @ Bᵀ`` plus Gaussian noise of a set standard deviation (optionally cubed); no effective matrix."""

    def __init__(self, matrix: torch.Tensor, noise: float, *, cube: bool = False, seed: int) -> None:
        super().__init__(matrix.shape[1], matrix.shape[0])
        self.matrix, self.noise, self.cube = matrix, noise, cube
        self.generator = torch.Generator().manual_seed(seed)

    def _project(self, e: torch.Tensor) -> torch.Tensor:
        out = e @ self.matrix.T
        if self.cube:
            out = out**3 / 3
        return out + self.noise * torch.randn(out.shape, generator=self.generator, dtype=out.dtype)


def test_enob_definition():
    assert enob(1.76) == pytest.approx(0.0)
    assert enob(1.76 + 6.02 * 8) == pytest.approx(8.0)


def test_exact_and_scaled_outputs():
    target = torch.randn(50, 20, generator=torch.Generator().manual_seed(0))
    exact = fidelity(target, target)
    assert exact.cosine == pytest.approx(1.0) and exact.snr_db == math.inf and exact.enob == math.inf
    # A 10% scale error: the cosine does not see it, the SNR does: 10 log10(1 / 0.1²) = 20 dB.
    scaled = fidelity(1.1 * target, target)
    assert scaled.cosine == pytest.approx(1.0) and scaled.snr_db == pytest.approx(20.0)
    assert scaled.samples == 50 and scaled.reference == "given matrix"


def test_additive_noise_of_known_level():
    # Unit-variance target entries and noise of sd 0.1: SNR 20 dB. With 400 x 100 = 4·10⁴ entries the noise power
    # has relative sd sqrt(2 / 4·10⁴) = 0.7%, i.e. 0.03 dB; 0.2 dB is over 6 sd. The per-sample cosine of a
    # 100-entry vector with 1% noise power is 1 / sqrt(1.01) = 0.995, within 0.002 (sample spread / sqrt(400)).
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(400, 100, generator=generator, dtype=torch.float64)
    noisy = target + 0.1 * torch.randn(400, 100, generator=generator, dtype=torch.float64)
    result = fidelity(noisy, target)
    assert result.snr_db == pytest.approx(20.0, abs=0.2)
    assert result.enob == pytest.approx((20.0 - 1.76) / 6.02, abs=0.05)
    assert result.cosine == pytest.approx(1 / math.sqrt(1.01), abs=0.002)


def test_digital_device_is_exact_to_float32():
    projector = build_projector("digital", 6, 30)
    e = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    result = feedback_fidelity(projector, e)
    # float32 products against a float64 target: about 7 significant digits, ENOB near the 24-bit mantissa.
    assert result.reference == "effective matrix" and result.cosine > 1 - 1e-9 and result.snr_db > 120
    given = feedback_fidelity(projector, e, reference_matrix=2 * projector.effective_matrix())
    # Against 2B: the noise equals the output, a quarter of the target's power: 10 log10(4) dB.
    assert given.reference == "given matrix" and given.snr_db == pytest.approx(10 * math.log10(4), abs=1e-4)


def test_device_only_target_removes_the_encoding_loss():
    # ideal-opu has no camera noise: against the quantised error it is exact to float32, against e it is not
    # (ternary encoding keeps only the entries above a quarter of the maximum).
    projector = build_projector("opu-sim", 10, 64, profile="ideal-opu")
    e = torch.randn(128, 10, generator=torch.Generator().manual_seed(0))
    output = projector.project(e)
    code = measure_fidelity(projector, e, output, against="code")
    error = measure_fidelity(projector, e, output, against="error")
    assert code.snr_db > 60 and error.snr_db < 15 and error.cosine < code.cosine


def test_without_a_matrix_fidelity_is_against_the_best_linear_fit():
    # Noise of sd 0.3 on e @ Bᵀ. A least-squares map fitted on m = 200 samples predicts new ones with noise power
    # σ² (1 + d / (m − d − 1)) (8 / 191 = +4.2%), so the expected SNR is the signal power of this batch over that.
    # The measured noise power has relative sd sqrt(2 / (400·40)) = 1.1% (0.05 dB); 0.25 dB is 5 sd.
    matrix = torch.randn(40, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    e = torch.randn(400, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    linear = feedback_fidelity(NoisyLinear(matrix, 0.3, seed=0), e)
    assert linear.reference == "best linear fit"
    signal = float((e @ matrix.T).square().mean())
    expected = 10 * math.log10(signal / (0.09 * (1 + 8 / 191)))
    assert linear.snr_db == pytest.approx(expected, abs=0.25)
    cubic = feedback_fidelity(NoisyLinear(matrix, 0.3, cube=True, seed=0), e)
    assert cubic.reference == "best linear fit" and cubic.cosine < linear.cosine - 0.05


def test_intensity_readout_is_measured_against_the_best_linear_fit():
    projector = build_projector("opu-sim", 10, 128, overrides={"readout.mode": "intensity"})
    e = torch.randn(128, 10, generator=torch.Generator().manual_seed(0))
    result = feedback_fidelity(projector, e, against="code")
    assert result.reference == "best linear fit" and 0.3 < result.cosine < 0.99


def test_errors():
    target = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"output must be a floating 2-D tensor \(n, D\), got \(4,\)"):
        fidelity(torch.zeros(4), target)
    with pytest.raises(ValueError, match="target must be a floating 2-D tensor"):
        fidelity(target, [[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"same shape, got \(4, 3\) and \(3, 4\)"):
        fidelity(target, torch.ones(3, 4))
    with pytest.raises(ValueError, match="target is identically zero"):
        fidelity(torch.ones(4, 3), target)
    projector = build_projector("digital", 3, 5)
    e = torch.randn(4, 3)
    with pytest.raises(TypeError, match="projector must be an optodfa Projector, got str"):
        feedback_fidelity("digital", e)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="against must be one of 'error', 'code'; got 'both'"):
        feedback_fidelity(projector, e, against="both")
    with pytest.raises(ValueError, match=r"reference_matrix must be a tensor of shape \(D, d\) = \(5, 3\), got \(3, 5"):
        feedback_fidelity(projector, e, reference_matrix=torch.zeros(3, 5))
    matrixless = NoisyLinear(torch.randn(5, 3), 0.1, seed=0)
    with pytest.raises(ValueError, match=r"at least 2 \(d \+ 1\) = 8 error vectors; got n = 7"):
        feedback_fidelity(matrixless, torch.randn(7, 3))
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        fidelity_report("digital", n=0)
    with pytest.raises(KeyError, match="unknown device 'nope'"):
        fidelity_report("nope")


def test_report_and_cli(capsys):
    text = fidelity_report("opu-sim", overrides={"camera.bits": "4"}, n=32, d=4, D=16, seed=1)
    lines = text.splitlines()
    assert lines[0] == "device opu-sim, profile lighton-aurora; overrides: camera.bits=4"
    assert "readout holographic (4 frames per plane), encoding ternary (1 plane(s)), 4 frames per error vector" in text
    assert any(line.startswith("end to end (B_eff e)") for line in lines)
    assert any(line.startswith("device only (B_eff e_q)") for line in lines)
    assert "frames 128, hardware time 64 ms" in text
    assert main(["devices", "fidelity", "digital"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("device digital; overrides: none") and "measured against: effective matrix" in printed
    assert main(["devices", "fidelity", "opu-sim", "--set", "readout.mode=intensity"]) == 0
    assert "measured against: best linear fit" in capsys.readouterr().out
