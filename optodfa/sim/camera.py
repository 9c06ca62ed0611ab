"""The camera: exposure, photo-electrons with shot and read noise, full well, gain, dark offset and ADC.

Per pixel, with ``I`` the optical intensity in units of ``σ²`` (the mean speckle intensity one lit mirror gives):

1. expected photo-electrons ``μ = q · τ · I`` (``q = photon_rate`` in e⁻/s per unit intensity, ``τ`` the exposure);
2. electrons ``e = Poisson(μ) + N(0, σ_read²)`` (:meth:`Camera.electrons`);
3. counts ``c = clip(floor(G · min(e, full_well) + c_dark), 0, 2^bits − 1)`` (:meth:`Camera.adc`).

Shot noise is drawn exactly (Poisson) where ``μ < poisson_exact_below`` and, above it, as one Gaussian of variance
``μ + σ_read²`` (shot and read noise together; the normal approximation of a Poisson law of mean ``μ`` has a
skewness of ``1/sqrt(μ)``, 0.18 at the default threshold of 30 e⁻). The full well clips the electron count after
read noise is added, not before; the two orders differ only for pixels within a few σ_read of full well, which are
saturated either way. A reading at the top code counts as saturated (the camera cannot tell a pixel that just
reaches full scale from one clipped above it). ``bits=None`` models unlimited bits: no flooring and no top code
(counts are float32); ``full_well=inf`` models an unlimited well.

Auto-exposure chooses ``τ ≤ exposure_s`` so that the ``auto_exposure_quantile`` of the frame's intensities lands at
``auto_exposure_target`` of the saturation level. It predicts that quantile from the frame itself without looking
at the speckle: fully developed speckle is exponential, so its ``p``-quantile is ``−ln(1 − p)`` times its mean, and
the mean is ``σ²`` times the lit mirrors (lightonml likewise sets exposure from the count of ones).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from optodfa.sim import kernels, threads
from optodfa.sim.noise import NoiseSource, normal_table
from optodfa.sim.workspace import Workspace
from optodfa.validation import check_choice, check_int, check_real

if TYPE_CHECKING:
    from optodfa.sim.speckle import FramePlan

__all__ = ["AUTO_EXPOSURE_MODES", "Camera", "count_dtype"]

AUTO_EXPOSURE_MODES = ("frame", "batch", "off")
_NUMPY_COUNT = {torch.uint8: np.uint8, torch.int16: np.int16, torch.int32: np.int32}


def count_dtype(bits: int | None) -> torch.dtype:
    """The integer dtype that holds ``bits``-bit counts (float32 for unlimited bits)."""
    if bits is None:
        return torch.float32
    if bits <= 8:
        return torch.uint8
    return torch.int16 if bits <= 15 else torch.int32


@dataclasses.dataclass(frozen=True)
class Camera:
    """A camera model; all quantities in SI units or electrons/counts.

    Attributes:
        bits: ADC bit depth in [1, 16], or ``None`` for unlimited bits (no quantisation, no top code).
        photon_rate: mean photo-electrons per second at a pixel per unit intensity (one lit mirror), e⁻/s.
        exposure_s: exposure time in seconds; the maximum when auto-exposure is on.
        auto_exposure: ``"frame"`` (one exposure per frame), ``"batch"`` (one per acquisition, the shortest its
            frames need) or ``"off"`` (always ``exposure_s``).
        auto_exposure_target: fraction of the saturation level at which the chosen quantile lands, in (0, 1].
        auto_exposure_quantile: intensity quantile auto-exposure places, in (0, 1).
        shot_noise: draw Poisson shot noise (``False``: electrons equal their mean).
        read_noise_e: read noise standard deviation in electrons (>= 0).
        dark_offset: counts added in the dark (>= 0).
        full_well_e: electrons a pixel holds (> 0, may be ``inf``).
        gain: counts per electron (> 0), or ``None``: the ADC spans the full well (``(2^bits − 1) / full_well``;
            1 count per electron when the bits or the well are unlimited). Resolved at construction.
        poisson_exact_below: mean electron count under which shot noise is drawn exactly, e⁻ (>= 0).
    """

    bits: int | None = 8
    photon_rate: float = 1.0e7
    exposure_s: float = 400e-6
    auto_exposure: str = "frame"
    auto_exposure_target: float = 0.8
    auto_exposure_quantile: float = 0.999
    shot_noise: bool = True
    read_noise_e: float = 0.0
    dark_offset: float = 0.0
    full_well_e: float = math.inf
    gain: float | None = 1.0
    poisson_exact_below: float = 30.0

    def __post_init__(self) -> None:
        if self.bits is not None:
            check_int("camera.bits", self.bits, low=1, high=16)
        check_real("camera.photon_rate", self.photon_rate, low=0.0, low_open=True)
        check_real("camera.exposure", self.exposure_s, low=0.0, low_open=True)
        check_choice("camera.auto_exposure", self.auto_exposure, AUTO_EXPOSURE_MODES)
        check_real("camera.auto_exposure_target", self.auto_exposure_target, low=0.0, high=1.0, low_open=True)
        check_real("camera.auto_exposure_quantile", self.auto_exposure_quantile, low=0.0, high=1.0,
                   low_open=True, high_open=True)
        if not isinstance(self.shot_noise, bool):
            raise TypeError(f"camera.shot_noise must be true or false, got {self.shot_noise!r}")
        check_real("camera.read_noise", self.read_noise_e, low=0.0)
        check_real("camera.dark_offset", self.dark_offset, low=0.0)
        if not (isinstance(self.full_well_e, (int, float)) and self.full_well_e == math.inf):
            check_real("camera.full_well", self.full_well_e, low=0.0, low_open=True)
        if self.gain is None:
            span = self.max_code / self.full_well_e
            object.__setattr__(self, "gain", span if 0 < span < math.inf else 1.0)
        check_real("camera.gain", self.gain, low=0.0, low_open=True)
        check_real("camera.poisson_exact_below", self.poisson_exact_below, low=0.0)
        if self.bits is not None and self.dark_offset >= self.max_code:
            raise ValueError(f"camera.dark_offset must be below the top code {self.max_code:g} of a "
                             f"{self.bits}-bit ADC, got {self.dark_offset:g}")

    # -- derived levels ------------------------------------------------------------------------------------
    @property
    def max_code(self) -> float:
        """Top ADC code ``2^bits − 1`` (``inf`` for unlimited bits)."""
        return math.inf if self.bits is None else float(2**self.bits - 1)

    @property
    def top_count(self) -> float:
        """Highest reading: the full well or the top code, whichever comes first (``inf`` if neither)."""
        full = self.gain * self.full_well_e + self.dark_offset
        # An 'auto' gain makes the full well land on the top code up to rounding; do not lose that code to it.
        return self.max_code if math.isclose(full, self.max_code, rel_tol=1e-9) else min(full, self.max_code)

    @property
    def saturation_e(self) -> float:
        """Electrons at which a reading reaches :attr:`top_count`."""
        return (self.top_count - self.dark_offset) / self.gain

    # -- exposure ----------------------------------------------------------------------------------------------
    def exposure(self, mean_intensity: torch.Tensor) -> torch.Tensor:
        """``(n,)`` exposures in seconds for frames of ``(n,)`` expected mean intensity (units of σ²)."""
        tau_max = torch.full_like(mean_intensity, self.exposure_s)
        if self.auto_exposure == "off" or math.isinf(self.saturation_e):
            return tau_max
        quantile = -math.log1p(-self.auto_exposure_quantile) * mean_intensity
        wanted = self.auto_exposure_target * self.saturation_e / (self.photon_rate * quantile)
        # A dark frame asks for an infinite exposure; the cap turns that into exposure_s.
        tau = torch.minimum(wanted, tau_max)
        if self.auto_exposure == "batch":
            tau = tau.amin().expand_as(tau).clone()
        return tau

    # -- sensor -------------------------------------------------------------------------------------------------
    def expose(self, mu: torch.Tensor, noise: NoiseSource, rows: torch.Tensor | None = None, *,
               gain: float = 1.0, offset: float = 0.0, out: torch.Tensor | None = None,
               workspace: Workspace | None = None) -> torch.Tensor:
        """Photo-electrons plus read noise, times ``gain`` plus ``offset``, for each frame.

        Args:
            mu: ``(u, M)`` expected photo-electrons (float, not modified).
            noise: the noise source.
            rows: ``(k,)`` int64 row of ``mu`` for each frame (frames that share a row get independent noise);
                ``None``: one frame per row.
            gain, offset: affine map applied to the electrons (``gain=1, offset=0``: electrons; the camera's gain
                and dark offset: counts before flooring and clipping).
            out: optional ``(k, M)`` buffer for the result.
            workspace: optional scratch buffers for the temporaries.

        Returns:
            ``(k, M)`` float ``gain · (Poisson(mu) + N(0, σ_read²)) + offset``, Poisson drawn exactly below
            ``poisson_exact_below`` and as a Gaussian of variance ``mu + σ_read²`` above.
        """
        noisy = self.shot_noise or self.read_noise_e > 0
        bits = None
        if noisy and mu.device.type == "cpu":
            k = mu.shape[0] if rows is None else rows.shape[0]
            bits = noise.normal_bits(k * mu.shape[1]).reshape(k, mu.shape[1])
        return self._expose(mu, noise, rows, bits, gain=gain, offset=offset, out=out, workspace=workspace)

    def _expose(self, mu: torch.Tensor, noise: NoiseSource, rows: torch.Tensor | None, bits: np.ndarray | None, *,
                gain: float, offset: float, out: torch.Tensor | None,
                workspace: Workspace | None) -> torch.Tensor:
        """:meth:`expose` with the CPU's table indices ``bits`` (``(k, M)`` uint16, any strides) already drawn;
        ``None`` on a GPU, which draws its own."""
        read = self.read_noise_e
        k = mu.shape[0] if rows is None else rows.shape[0]
        shape = (k, mu.shape[1])
        ws = workspace if workspace is not None else Workspace()
        # Per-row quantities are computed on the (few) distinct rows and copied out once per frame.
        if rows is None:
            # One pass for offset + gain·mu.
            base = torch.full((), offset, dtype=mu.dtype, device=mu.device)
            value = torch.add(base, mu, alpha=gain, out=out) if out is not None else torch.add(base, mu, alpha=gain)
        else:
            mean = torch.mul(mu, gain, out=ws.get("mean_rows", tuple(mu.shape), mu.dtype, mu.device))
            value = _pick(mean.add_(offset), rows, out)
        if not self.shot_noise and read == 0:
            return value
        z = ws.get("z", shape, value.dtype, value.device)
        if bits is None:
            z = noise.normal(shape, value.dtype, out=z)
        else:
            index_out = ws.get("z_index", shape, torch.int32, value.device)
            if value.dtype == torch.float32:
                z = NoiseSource.lookup(bits, out=z, index_out=index_out)
            else:
                z = NoiseSource.lookup(bits, index_out=index_out).to(value.dtype)
        if not self.shot_noise:
            return value.add_(z, alpha=read * gain)
        threshold = self.poisson_exact_below
        small = None
        if threshold > 0:
            small = value < gain * threshold + offset
            if value.device.type == "cpu":
                # numpy's flatnonzero is several times faster than torch.nonzero on the CPU.
                index = torch.from_numpy(np.flatnonzero(small.numpy()))
                rates = (value.view(-1).index_select(0, index) - offset) / gain
                exact = noise.poisson(rates)
                if read > 0:
                    exact.add_(z.view(-1).index_select(0, index), alpha=read)
                exact.mul_(gain).add_(offset)
        if rows is None:
            # gain·sqrt(mu + r²) = sqrt(gain·value + gain²r² − gain·offset), value = gain·mu + offset: two passes.
            base = torch.full((), gain * gain * read * read - gain * offset, dtype=mu.dtype, device=mu.device)
            std = torch.add(base, value, alpha=gain, out=ws.get("std", shape, mu.dtype, mu.device))
            if offset:
                std.clamp_(min=0)  # rounding of gain·offset could leave a dark pixel at -1 ulp
            std.sqrt_()
        else:
            std_rows = torch.add(mu, read * read, out=ws.get("std_rows", tuple(mu.shape), mu.dtype, mu.device))
            std = _pick(std_rows.sqrt_().mul_(gain), rows, ws.get("std", shape, mu.dtype, mu.device))
        value.addcmul_(std, z)
        if small is not None:
            if value.device.type == "cpu":
                value.view(-1).index_copy_(0, index, exact)
            else:
                # No data-dependent sizes on a GPU (they cost a host round trip): draw Poisson everywhere with
                # the rate zeroed where the Gaussian is kept, and select.
                mean = mu if rows is None else _pick(mu, rows)
                rates = torch.where(small, mean, 0.0)
                exact = noise.poisson(rates)
                if read > 0:
                    exact.add_(z, alpha=read)
                torch.where(small, exact.mul_(gain).add_(offset), value, out=value)
        return value

    def electrons(self, mu: torch.Tensor, noise: NoiseSource, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(k, M)`` photo-electrons plus read noise for expected electrons ``mu`` (before the ADC)."""
        return self.expose(mu, noise, rows)

    def adc(self, value: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Floor and clip ``gain · electrons + offset`` (overwritten) to counts; also the saturated readings.

        Returns counts (:func:`count_dtype`; written into ``out`` when given) and a 0-d int64 tensor on the same
        device.
        """
        top = self.top_count
        if self.bits is None:
            saturated = (torch.zeros((), dtype=torch.int64, device=value.device) if math.isinf(top)
                         else torch.count_nonzero(value >= top))
            if not math.isinf(top):
                value.clamp_(max=top)
            return (value if out is None else out.copy_(value)), saturated
        # Truncation toward zero is floor on the clamped, non-negative values.
        value.clamp_(0.0, top)
        # The top reading as the readings' dtype rounds it (float32 may round 254.99999 up to 255).
        dtype, code = count_dtype(self.bits), math.floor(torch.tensor(top, dtype=value.dtype).item())
        if value.device.type == "cpu":
            # numpy's float->integer cast and boolean count are 3-10x faster than torch's on the CPU.
            counts = torch.empty(value.shape, dtype=dtype) if out is None else out
            np.copyto(counts.numpy(), value.numpy(), casting="unsafe")
            return counts, torch.tensor(np.count_nonzero(counts.numpy() == code), dtype=torch.int64)
        counts = value.to(dtype) if out is None else out.copy_(value)
        return counts, torch.count_nonzero(counts == code)

    def read(self, mu: torch.Tensor, noise: NoiseSource, rows: torch.Tensor | None = None, *,
             workspace: Workspace | None = None, out: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Counts ``(k, M)`` and the saturated-reading count for expected electrons ``mu`` (rows as in
        :meth:`expose`). With ``out`` (``(k, M)``, :func:`count_dtype` or float for unlimited bits) the counts
        are written there and only the saturated count is returned."""
        readings = None
        if workspace is not None:
            # The float readings become counts (a copy) in adc, so they may live in scratch space.
            k = mu.shape[0] if rows is None else rows.shape[0]
            readings = workspace.get("readings", (k, mu.shape[1]), mu.dtype, mu.device)
        value = self.expose(mu, noise, rows, gain=self.gain, offset=self.dark_offset, out=readings,
                            workspace=workspace)
        if out is not None:
            return self.adc(value, out)[1]
        if readings is not None and self.bits is None:
            value = value.clone()  # unlimited bits return the readings themselves: not scratch space
        return self.adc(value)

    def read_blocks(self, plan: FramePlan, noise: NoiseSource, *, out: torch.Tensor, workspace: Workspace,
                    width: int) -> torch.Tensor:
        """:meth:`read` into ``out`` (``(k, M)`` counts) a block of ``width`` pixel columns at a time.

        ``plan`` gives the expected photo-electrons of any block of pixels and the row of each frame
        (:class:`optodfa.sim.speckle.FramePlan`). The noise is drawn for all ``k × M`` readings first, in the order
        :meth:`read` draws it, so the counts equal ``read``'s; each block then runs through the camera while it is
        in cache, in one compiled pass (:mod:`optodfa.sim.kernels`) where it applies. Narrow binary frames
        (compiled plans) with the counter noise stream go further: fields, noise and camera in one compiled call,
        in tiles of its own width, on as many threads as torch has (:mod:`optodfa.sim.threads`), with the same
        counts. Exact Poisson draws and a GPU take the whole width at once (the Poisson sampler's order follows the
        readings).

        Returns the saturated-reading count, a 0-d int64 tensor on ``out``'s device.
        """
        k, pixels = out.shape
        cpu = out.device.type == "cpu"
        if not cpu or (self.shot_noise and self.poisson_exact_below > 0):
            width = pixels
        compiled = cpu and self._compiled_pass()
        if compiled and plan.compiled and noise.counter_based:
            return self._read_binary(plan, noise, out, workspace)
        bits = None
        if cpu and (self.shot_noise or self.read_noise_e > 0):
            bits = noise.normal_bits(k * pixels).reshape(k, pixels)
        if compiled:
            assert bits is not None
            return self._read_compiled(plan, bits, out, width)
        saturated = None
        for c0 in range(0, pixels, width):
            c1 = min(pixels, c0 + width)
            mu = plan.intensities(c0, c1)
            readings = workspace.get("readings", (k, c1 - c0), mu.dtype, mu.device)
            value = self._expose(mu, noise, plan.rows, None if bits is None else bits[:, c0:c1], gain=self.gain,
                                 offset=self.dark_offset, out=readings, workspace=workspace)
            sat = self.adc(value, out[:, c0:c1])[1]
            saturated = sat if saturated is None else saturated.add_(sat)
        assert saturated is not None
        return saturated

    def reads_in_one_pass(self, plan_compiled: bool, noise: NoiseSource) -> bool:
        """Whether :meth:`read_blocks` reads a plan in one compiled call that keeps nothing per reading but the
        counts (compiled plans with the counter stream): its caller then need not bound a chunk's size."""
        return plan_compiled and noise.counter_based and self._compiled_pass()

    def _compiled_pass(self) -> bool:
        """Whether this camera's model is the case the compiled pass covers (on the CPU): Gaussian shot noise
        everywhere and a finite bit depth."""
        return self.shot_noise and self.poisson_exact_below == 0 and self.bits is not None and kernels.AVAILABLE

    def _read_compiled(self, plan: FramePlan, bits: np.ndarray, out: torch.Tensor, width: int) -> torch.Tensor:
        """Counts of a plan whose fields come from torch's matrix product (on torch's threads), then the compiled
        camera pass, block by block."""
        rows, shared, table, levels = self._compiled_inputs(plan, out.shape[0])
        counts = out.numpy()
        saturated = 0
        for c0 in range(0, out.shape[1], width):
            c1 = min(out.shape[1], c0 + width)
            fields, scale = plan.fields(c0, c1)
            factor = (np.ones(fields.shape[0], dtype=table.dtype) if scale is None
                      else scale.reshape(-1).numpy())
            saturated += kernels.gaussian_counts(fields.numpy(), factor, rows, shared, bits[:, c0:c1], table,
                                                 out=counts[:, c0:c1], **levels)
        return torch.tensor(saturated, dtype=torch.int64)

    def _read_binary(self, plan: FramePlan, noise: NoiseSource, out: torch.Tensor,
                     workspace: Workspace) -> torch.Tensor:
        """Counts of a compiled plan: fields, counter-stream noise and camera in one compiled call, on as many
        threads as torch has (:mod:`optodfa.sim.threads`)."""
        k, pixels = out.shape
        rows, shared, table, levels = self._compiled_inputs(plan, k)
        frames, weights = plan.binary_inputs()
        groups = threads.parts(-(-pixels // MIN_TILE))
        # Tiles as wide as TILE allows while each thread gets at least TILES_PER_THREAD of them (an even share).
        tile = min(TILE, max(MIN_TILE, -(-pixels // (groups * TILES_PER_THREAD))))
        scratch = workspace.get("binary_levels", (groups, 3, tile), torch.float32, torch.device("cpu"))
        key, words = noise.counter_position()
        saturated = kernels.binary_counts(frames, weights, rows, shared, table, out=out.numpy(), key=key,
                                          first=4 * words, tile=tile, scratch=scratch.numpy(), **levels)
        noise.skip_words(-(-(k * pixels) // 4))  # normal_bits(k·M) draws whole words
        return torch.tensor(saturated, dtype=torch.int64)

    def _compiled_inputs(self, plan: FramePlan, frames: int) -> tuple[np.ndarray, bool, np.ndarray, dict[str, Any]]:
        """Row of each frame, whether rows repeat, the normal table and the camera's levels for the kernels."""
        shared = plan.rows is not None
        rows = plan.rows.numpy() if plan.rows is not None else np.arange(frames, dtype=np.int64)
        # The top reading as the readings' dtype rounds it (numpy rounds a float to float32 as torch does).
        code = math.floor((np.float32 if plan.weights.dtype == torch.float32 else np.float64)(self.top_count))
        table = normal_table().to(plan.weights.dtype).numpy()
        levels = {"gain": self.gain, "offset": self.dark_offset, "read_noise": self.read_noise_e,
                  "top": self.top_count, "code": code}
        return rows, shared, table, levels

    def describe(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["full_well_e"] = None if math.isinf(self.full_well_e) else self.full_well_e
        return data


# Pixel columns the compiled pass takes at once (a row's levels and a frame's normals, 3 x 4 B each, stay in the
# first-level cache), the narrowest tile worth a call per row, and the tiles each thread gets at least.
TILE = 1024
MIN_TILE = 64
TILES_PER_THREAD = 3


def _pick(values: torch.Tensor, rows: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
    if rows is None:
        return values
    return torch.index_select(values, 0, rows, out=out) if out is not None else values.index_select(0, rows)
