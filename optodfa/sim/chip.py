"""``chip-sim``: a silicon-photonic microring weight bank (SPEC §3) computing the DFA feedback ``B e``.

The chip holds a ``rows × cols`` bank of microring weights. Each input channel (a wavelength) carries one entry of
the error, modulated by an input DAC; each ring weights its channel by a real factor in ``[−1, 1]`` (balanced
detection of its through and drop ports); a photodetector sums a row, and an ADC digitises the sum. A feedback
matrix larger than the chip is *tiled*: every ``rows × cols`` block is programmed in turn, the partial sums of each
tile are digitised on their own and added digitally.

For the target feedback ``B`` (``(D, d)``, i.i.d. N(0, 1) from the feedback seed, as for the digital device) and an
error batch ``e`` (``(n, d)``):

1. **Weights**: ``W = clip(B / c, −1, 1)`` with ``c = weights.clip`` (B's standard deviations at weight 1),
   quantised to ``weights.bits`` (``2^bits − 1`` symmetric levels ``k / L``, ``L = 2^(bits−1) − 1``; 1 bit is the
   sign), plus a static programming error ``N(0, weights.noise²)``, clipped again to ``[−1, 1]``: ``W_p``.
2. **Crosstalk**: ring ``j`` also passes a fraction ``κ = analog.crosstalk`` of its neighbouring channels
   ``j ± 1`` (within the tile: channels of other tiles are not on the bus at the same time), so a tile applies
   ``W_p C`` with ``C`` tridiagonal (1 on the diagonal, ``κ`` beside it).
3. **Input DAC**: each sample is scaled by ``s = max |e|`` to ``[−1, 1]`` and quantised to ``dac.bits`` the same
   symmetric way.
4. **Per tile**: partial sums ``p = W_tile x_tile`` plus Gaussian noise of standard deviation
   ``analog.noise · A``, digitised by an ADC of ``adc.bits`` over ``[−A, A]`` with ``A = adc.range · cols``
   (readings beyond are clipped and counted as saturated).
5. **Output**: ``y = s · c · Σ_tiles ADC(p)``, an estimate of ``e @ B_effᵀ`` with ``B_eff = c · W_p C``
   (:meth:`ChipProjector.effective_matrix`), whose entries have about unit variance like ``B``.

Static parts (quantised and mis-programmed weights, crosstalk) are in ``B_eff``, the matrix the hardware really
applies and what alignment is measured against; dynamic parts (DAC, noise, ADC) are what fidelity measures. Each
tile operation (one input vector through one programmed tile) costs ``chip.tile_time`` seconds and
``chip.tile_energy`` joules, counted in ``hardware_seconds`` and ``energy_joules``; ``frames`` stays 0 (no DMD).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from optodfa.device import Projector
from optodfa.registry import ProjectorSpec
from optodfa.seeding import torch_generator
from optodfa.sim.digital import feedback_matrix
from optodfa.validation import check_int, check_real

__all__ = ["DEFAULT_CHIP_PROFILE", "ChipProjector", "build", "quantise_symmetric"]

DEFAULT_CHIP_PROFILE = "chip-8bit"
_PROGRAMMING_LABEL = 21  # sub-stream of the noise seed: the static programming error of the weights
_NOISE_LABEL = 22  # sub-stream of the noise seed: detector noise, one draw per tile reading


def quantise_symmetric(x: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Round ``x`` (values in ``[−1, 1]``) to ``2^bits − 1`` symmetric levels ``k / L``, ``L = 2^(bits−1) − 1``.

    1 bit keeps the sign only (``±1``, zero to ``+1``); ``None`` returns ``x`` unchanged (unlimited bits).
    """
    if bits is None:
        return x
    if bits == 1:
        return torch.where(x < 0, -1.0, 1.0).to(x.dtype)
    levels = 2 ** (bits - 1) - 1
    return torch.round(x * levels) / levels


class ChipProjector(Projector):
    """A tiled microring weight bank behind the :class:`~optodfa.device.Projector` protocol (module docstring).

    Args:
        target: ``(D, d)`` feedback matrix ``B`` to program (unit-variance entries).
        rows, cols: chip size in output and input channels.
        weight_bits, weight_noise, weight_clip: weight precision (``None``: unlimited), programming error
            (weight units) and the multiple of ``B``'s scale at weight 1.
        dac_bits, adc_bits: converter bits (``None``: unlimited; an unlimited ADC also does not clip).
        adc_range: ADC full scale as a fraction of ``cols`` (the largest possible partial sum).
        noise: detector noise standard deviation as a fraction of the ADC full scale.
        crosstalk: fraction of each neighbouring channel a ring passes.
        tile_time_s, tile_energy_j: cost of one tile operation.
        noise_seed: seed of the programming error and the detector noise (keyword-only).
        dtype, device: dtype and torch device of the effective matrix (the projection follows its input's).
        description: extra plain data for :meth:`describe`.
    """

    def __init__(self, target: torch.Tensor, *, rows: int, cols: int, weight_bits: int | None, weight_noise: float,
                 weight_clip: float, dac_bits: int | None, adc_bits: int | None, adc_range: float, noise: float,
                 crosstalk: float, tile_time_s: float, tile_energy_j: float, noise_seed: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 description: dict[str, Any] | None = None) -> None:
        if not isinstance(target, torch.Tensor) or target.ndim != 2 or not target.is_floating_point():
            raise ValueError(f"target must be a floating (D, d) matrix, got {getattr(target, 'shape', target)!r}")
        super().__init__(in_features=target.shape[1], out_features=target.shape[0])
        self.rows, self.cols = check_int("chip.rows", rows, low=1), check_int("chip.cols", cols, low=1)
        for name, bits in (("weights.bits", weight_bits), ("dac.bits", dac_bits), ("adc.bits", adc_bits)):
            if bits is not None:
                check_int(name, bits, low=1, high=16)
        self.weight_bits, self.dac_bits, self.adc_bits = weight_bits, dac_bits, adc_bits
        self.weight_noise = check_real("weights.noise", weight_noise, low=0.0)
        self.weight_clip = check_real("weights.clip", weight_clip, low=0.0, low_open=True)
        self.adc_range = check_real("adc.range", adc_range, low=0.0, high=1.0, low_open=True)
        self.noise = check_real("analog.noise", noise, low=0.0)
        self.crosstalk = check_real("analog.crosstalk", crosstalk, low=0.0, high=0.5)
        self.tile_time_s = check_real("chip.tile_time", tile_time_s, low=0.0, low_open=True)
        self.tile_energy_j = check_real("chip.tile_energy", tile_energy_j, low=0.0)
        self.noise_seed = noise_seed
        self._description = dict(description or {})
        self.tiles = (math.ceil(self.out_features / rows), math.ceil(self.in_features / cols))
        self.full_scale = self.adc_range * cols
        self.programmed = self._program(target)  # (D_pad, d_pad) W_p
        # (D_pad, d_pad) W_p C, what the tiles apply
        self._weights = self._with_crosstalk(self.programmed).to(device=device, dtype=dtype)
        self._generator = torch_generator(noise_seed, _NOISE_LABEL)
        self._saturated = 0

    # -- projection ------------------------------------------------------------------------------------------------
    def _project(self, e: torch.Tensor) -> torch.Tensor:
        n, (tile_rows, tile_cols) = e.shape[0], self.tiles
        work = torch.float64 if e.dtype == torch.float64 else torch.float32
        scale = e.detach().abs().amax(dim=1, keepdim=True).to(work)  # (n, 1) per-sample DAC full scale
        x = torch.zeros(n, tile_cols * self.cols, dtype=work, device=e.device)
        x[:, : self.in_features] = e.detach().to(work) / scale.clamp_min(torch.finfo(work).tiny)
        x = quantise_symmetric(x, self.dac_bits).view(n, tile_cols, self.cols)
        weights = self._weights.to(device=e.device, dtype=work).view(-1, tile_cols, self.cols)
        partial = torch.einsum("nkc,ikc->nik", x, weights)  # (n, D_pad, tiles along d): one reading per tile
        if self.noise > 0:
            draw = torch.randn(partial.shape, generator=self._generator, dtype=torch.float64)
            partial += (self.noise * self.full_scale) * draw.to(device=e.device, dtype=work)
        if self.adc_bits is not None:
            self._saturated += int((partial[:, : self.out_features].abs() > self.full_scale).sum())
            partial = self.full_scale * quantise_symmetric((partial / self.full_scale).clamp(-1.0, 1.0),
                                                           self.adc_bits)
        out = partial.sum(dim=2)[:, : self.out_features] * (scale * self.weight_clip)
        operations = n * tile_rows * tile_cols
        self._counters.hardware_seconds += operations * self.tile_time_s
        self._counters.energy_joules += operations * self.tile_energy_j
        self._counters.saturated_pixels = self._saturated
        return out.to(e.dtype)

    def effective_matrix(self) -> torch.Tensor:
        """``(D, d)`` ``B_eff = c · W_p C``: programmed weights with crosstalk, in the units of ``B``."""
        return self.weight_clip * self._weights[: self.out_features, : self.in_features]

    # -- bookkeeping -----------------------------------------------------------------------------------------------
    def reset_counters(self) -> None:
        super().reset_counters()
        self._saturated = 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": "chip-sim", "chip": {"rows": self.rows, "cols": self.cols},
                "tiles": list(self.tiles), "weight_bits": self.weight_bits, "weight_noise": self.weight_noise,
                "weight_clip": self.weight_clip, "dac_bits": self.dac_bits, "adc_bits": self.adc_bits,
                "adc_range": self.adc_range, "adc_full_scale": self.full_scale, "noise": self.noise,
                "crosstalk": self.crosstalk, "tile_time_s": self.tile_time_s, "tile_energy_j": self.tile_energy_j,
                "noise_seed": self.noise_seed, **self._description}

    def state_dict(self) -> dict[str, Any]:
        """Counters and the detector-noise generator (the programmed weights follow from the seeds)."""
        return {**super().state_dict(), "generator": self._generator.get_state(), "saturated": self._saturated}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._generator.set_state(state["generator"])
        self._saturated = int(state["saturated"])

    # -- internals -------------------------------------------------------------------------------------------------
    def _program(self, target: torch.Tensor) -> torch.Tensor:
        """``W_p`` zero-padded to whole tiles: clipped, quantised, mis-programmed, clipped (float64, CPU)."""
        big_d, d = target.shape
        weights = torch.zeros(self.tiles[0] * self.rows, self.tiles[1] * self.cols, dtype=torch.float64)
        block = quantise_symmetric((target.detach().double().cpu() / self.weight_clip).clamp(-1.0, 1.0),
                                   self.weight_bits)
        if self.weight_noise > 0:
            error = torch.randn(block.shape, generator=torch_generator(self.noise_seed, _PROGRAMMING_LABEL),
                                dtype=torch.float64)
            block = (block + self.weight_noise * error).clamp(-1.0, 1.0)
        weights[:big_d, :d] = block
        return weights

    def _with_crosstalk(self, weights: torch.Tensor) -> torch.Tensor:
        """``W C`` with ``C`` tridiagonal inside each tile of ``cols`` channels."""
        if self.crosstalk == 0:
            return weights.clone()
        tiles = weights.view(weights.shape[0], self.tiles[1], self.cols)
        mixed = tiles.clone()
        mixed[:, :, 1:] += self.crosstalk * tiles[:, :, :-1]
        mixed[:, :, :-1] += self.crosstalk * tiles[:, :, 1:]
        return mixed.view_as(weights)


def build(spec: ProjectorSpec) -> ChipProjector:
    """Silicon-photonic microring weight bank: quantised weights, DAC/ADC, noise, crosstalk, tiling (profile)."""
    from optodfa.profiles import ProfileError, load_profile

    profile = load_profile(spec.profile or DEFAULT_CHIP_PROFILE, spec.overrides)
    if profile.kind != "chip":
        raise ProfileError(f"device 'chip-sim' needs a chip profile (e.g. chip-8bit, chip-4bit); {profile.name!r} "
                           f"is a {profile.kind!r} profile")
    p = profile.values
    target = feedback_matrix(spec.out_features, spec.in_features, seed=spec.feedback_seed, dtype=torch.float64)
    projector = ChipProjector(
        target, rows=p["chip.rows"], cols=p["chip.cols"], weight_bits=p["weights.bits"],
        weight_noise=p["weights.noise"], weight_clip=p["weights.clip"], dac_bits=p["dac.bits"],
        adc_bits=p["adc.bits"], adc_range=p["adc.range"], noise=p["analog.noise"],
        crosstalk=p["analog.crosstalk"], tile_time_s=p["chip.tile_time"], tile_energy_j=p["chip.tile_energy"],
        noise_seed=spec.resolved_noise_seed, dtype=spec.dtype, device=spec.device,
        description={"profile": profile.as_dict(), "feedback_seed": spec.feedback_seed})
    return projector
