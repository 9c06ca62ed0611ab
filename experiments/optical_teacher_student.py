"""Teacher–student DFA with its feedback computed through a feedback device, against the noisy-feedback ODE.

The online simulation of SPEC §5 (K student and M teacher erf units, N inputs) takes its DFA feedback ``b ε`` from
a projector (``d = 1`` error, ``D = K`` outputs): ``digital`` (exact, the noiseless reference) and ``opu-sim``
with the profiles ``lighton-aurora`` (camera bits 8, 4, 2, 1) and ``low-light-opu``, one projector call per SGD
step with the errors of all seeds as the batch. Before the run, each device's feedback is measured on errors drawn
like the teacher–student error (``optodfa.feedback_noise``): gain, and residual noise variance per unit, which
give the ODE's feedback vector ``g ⊙ b`` and per-unit noise levels ``s_k``. The ODE from the same initial overlaps
is then overlaid on the simulation, with and without the noise term. One more setting, a ternary encoding with a
fixed threshold, makes the delivered feedback depend on the error's size (errors below the threshold get none),
which the ODE cannot represent: it shows where the bridge breaks.

    python -m experiments.optical_teacher_student            # full (N = 200, t up to 300, 8 seeds; ~25 min)
    python -m experiments.optical_teacher_student --quick    # seconds
    python -m experiments.optical_teacher_student --jobs 2   # settings on 2 processes
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import t as student_t

from experiments._common import add_common_arguments, markdown_table, write_results
from optodfa.feedback_noise import DeviceFeedback, FeedbackNoise, measure_feedback_noise, teacher_student_errors
from optodfa.registry import build_projector
from optodfa.seeding import derive_seed
from optodfa.theory import Dynamics, OrderParameters, Trajectory, draw_weights, integrate, log_time_grid, simulate

NAME = "optical_teacher_student"


@dataclasses.dataclass(frozen=True)
class DeviceSetting:
    """One feedback device: a label, the registry name, a profile and overrides."""

    label: str
    device: str
    profile: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()


DEVICES = (
    DeviceSetting("digital", "digital"),
    DeviceSetting("aurora 8-bit", "opu-sim", "lighton-aurora"),
    DeviceSetting("aurora 4-bit", "opu-sim", "lighton-aurora", (("camera.bits", 4),)),
    DeviceSetting("aurora 2-bit", "opu-sim", "lighton-aurora", (("camera.bits", 2),)),
    DeviceSetting("aurora 1-bit", "opu-sim", "lighton-aurora", (("camera.bits", 1),)),
    DeviceSetting("low-light 12-bit", "opu-sim", "low-light-opu"),
    DeviceSetting("aurora, fixed θ = 0.05", "opu-sim", "lighton-aurora",
                  (("encoding.rule", "fixed"), ("encoding.threshold", 0.05))),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    K: int = 4
    M: int = 2
    N: int = 200
    t_max: float = 300.0
    t_min: float = 0.05
    points: int = 22
    seeds: int = 8
    lr: float = 0.5
    init: float = 0.01
    feedback_seed: int = 5        # B_eff[:, 0] = (0.84, 1.24, -1.39, -0.35): both signs, none near 0
    sim_seed: int = 1
    noise_samples: int = 20000
    devices: tuple[DeviceSetting, ...] = DEVICES


QUICK = Settings(N=100, t_max=4.0, t_min=0.1, points=6, seeds=2, noise_samples=2000,
                 devices=(DEVICES[0], DEVICES[2]))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One device setting: its measured feedback, the simulation through the device, both ODEs (with and without
    the noise term), and the exact-feedback simulation with the same ``b`` (the finite-``N`` reference)."""

    setting: DeviceSetting
    noise: FeedbackNoise
    simulation: Trajectory
    ode: Trajectory
    ode_noiseless: Trajectory
    exact: Trajectory
    counters: dict[str, float]


def _projector(setting: DeviceSetting, settings: Settings, noise_seed: int | None = None) -> Any:
    return build_projector(setting.device, 1, settings.K, feedback_seed=settings.feedback_seed,
                           noise_seed=noise_seed, profile=setting.profile, overrides=dict(setting.overrides),
                           dtype=torch.float64)


def run_setting(setting: DeviceSetting, settings: Settings) -> Outcome:
    """Measure the device's feedback, run the simulation through it, and integrate both ODEs."""
    # The measurement uses its own noise stream, so the training run's device noise is the one it would be alone.
    probe = _projector(setting, settings, noise_seed=derive_seed(settings.feedback_seed, 101))
    errors = teacher_student_errors(settings.noise_samples, M=settings.M, seed=derive_seed(settings.sim_seed, 102))
    noise = measure_feedback_noise(probe, errors)
    weights = draw_weights(settings.K, settings.M, settings.N, seeds=list(range(settings.seeds)),
                           init_w=settings.init, init_v=settings.init)
    b = noise.b()
    weights = dataclasses.replace(weights, b=np.broadcast_to(b, weights.b.shape).copy())
    times = log_time_grid(settings.t_max, points=settings.points, t_min=settings.t_min, N=settings.N)
    base = Dynamics(algorithm="dfa", lr_w=settings.lr, lr_v=settings.lr)
    projector = _projector(setting, settings)
    sim = simulate(weights, base, times, seed=settings.sim_seed, feedback=DeviceFeedback(projector))
    initial = OrderParameters.from_weights(weights)
    ode = integrate(noise.dynamics(base), initial, times)
    ode_noiseless = integrate(base, initial, times)
    # The same run with exact feedback b ε (no device): how far the N → ∞ ODE is from this N with this b.
    exact = simulate(weights, base, times, seed=settings.sim_seed)
    print(f"{setting.label}: SNR {noise.snr_db:.1f} dB, gain {np.round(noise.gain, 3)}, s {np.round(noise.levels(), 3)}"
          f" ({noise.mode}); simulation {sim.info['wall_s']:.0f} s, ODE {ode.info['wall_s']:.1f} s", file=sys.stderr)
    return Outcome(setting, noise, sim, ode, ode_noiseless, exact, projector.counters().as_dict())


def run(settings: Settings, jobs: int = 1) -> list[Outcome]:
    """Every device setting, on ``jobs`` processes (settings are independent and seeded, so the results do not
    depend on ``jobs``)."""
    if jobs == 1:
        return [run_setting(setting, settings) for setting in settings.devices]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        return list(pool.map(run_setting, settings.devices, [settings] * len(settings.devices)))


@dataclasses.dataclass(frozen=True)
class Agreement:
    """ODE against simulation for one setting (see :func:`agreement`)."""

    median_rel_dev: float
    floor_ratio: float
    floor_band: float
    floor_tolerance: float
    floor_ratio_noiseless: float
    curve_within: float
    curve_within_noiseless: float
    holds: bool


def _log_ratio(sim: Trajectory, ode: Trajectory) -> np.ndarray:
    """``log(ε_g sim / ε_g ODE)`` per time and seed, (n_t, S) (each seed against the ODE from its own start)."""
    return np.log(sim.generalisation_error / ode.generalisation_error)


def _band(per_seed: np.ndarray) -> np.ndarray:
    """Half-width of the 95% confidence interval of the seed mean (last axis), Student t with S − 1 dof."""
    S = per_seed.shape[-1]
    if S < 2:
        return np.full(per_seed.shape[:-1], np.inf)
    return student_t.ppf(0.975, S - 1) * per_seed.std(axis=-1, ddof=1) / math.sqrt(S)


def agreement(outcome: Outcome, last: int = 3) -> Agreement:
    """How well the ODE with the measured noise predicts the simulation through the device.

    All comparisons are on ``ρ = log(ε_g sim / ε_g ODE)``, per seed (each against the ODE from its own start):

    * ``median_rel_dev``: median over the time grid of ``|mean ε_g sim − mean ε_g ODE| / mean ε_g ODE``;
    * ``floor_ratio``: the final error floor of the simulation over the ODE's, ``exp`` of the seed mean of ``ρ``
      averaged over the last ``last`` grid points; ``floor_band``: the factor of its 95% confidence interval over
      seeds, ``exp(t_{0.975, S−1} · sd/√S)``;
    * ``floor_tolerance``: the floor ratio of the exact-feedback simulation (same ``b``, same seeds, no device)
      against the noiseless ODE, as a factor ``>= 1``: the ODE is the ``N → ∞`` limit, and this is how far it is
      from this ``N`` when the feedback is exact;
    * ``holds``: ``|log floor_ratio| <= log floor_band + log floor_tolerance``: the floor is predicted as well as
      the seeds resolve it, up to the finite-``N`` error the exact ODE has anyway;
    * ``curve_within``: the fraction of grid times at which ``|mean ρ(t)|`` is within the same allowance taken at
      that time (band over seeds at ``t`` plus the exact run's ``|mean ρ(t)|``); ``curve_within_noiseless``: the
      same for the ODE without the noise term, to show whether the noise term is what the agreement needs.
    """
    sim, ode = outcome.simulation, outcome.ode
    eg_sim, eg_ode = sim.generalisation_error.mean(1), ode.generalisation_error.mean(1)
    median = float(np.median(np.abs(eg_sim - eg_ode) / eg_ode))
    rho, rho_quiet = _log_ratio(sim, ode), _log_ratio(sim, outcome.ode_noiseless)
    rho_exact = np.abs(_log_ratio(outcome.exact, outcome.ode_noiseless).mean(axis=1))
    allowance = _band(rho) + rho_exact
    within = float(np.mean(np.abs(rho.mean(axis=1)) <= allowance))
    within_quiet = float(np.mean(np.abs(rho_quiet.mean(axis=1)) <= _band(rho_quiet) + rho_exact))
    end = rho[-last:].mean(axis=0)
    band = float(_band(end))
    tolerance = float(abs(_log_ratio(outcome.exact, outcome.ode_noiseless)[-last:].mean()))
    ratio = float(np.exp(end.mean()))
    noiseless = float(np.exp(rho_quiet[-last:].mean()))
    return Agreement(median, ratio, float(np.exp(band)), float(np.exp(tolerance)), noiseless, within, within_quiet,
                     bool(abs(math.log(ratio)) <= band + tolerance))


HEADER = ["setting", "frames / projection", "SNR (dB)", "gain (min–max)", "s_k / |b_k| (min–max)", "gain spread",
          "final ε_g sim", "final ε_g ODE", "final ε_g ODE no noise", "median |Δε_g|/ε_g", "floor ratio sim/ODE",
          "allowed ×÷ (seeds · finite N)", "floor ratio sim/ODE no noise", "curve within (ODE / no noise)",
          "prediction"]


def summarise(outcomes: list[Outcome]) -> tuple[list[list[Any]], dict[str, Any]]:
    rows: list[list[Any]] = []
    key: dict[str, Any] = {}
    for outcome in outcomes:
        noise, a = outcome.noise, agreement(outcome)
        projections = max(1, outcome.counters["projections"])
        b = np.abs(noise.b())
        relative = np.divide(noise.levels(), b, out=np.full_like(b, np.inf), where=b > 0)
        label = outcome.setting.label
        rows.append([label, outcome.counters["frames"] / projections, noise.snr_db,
                     f"{noise.gain.min():.3g}–{noise.gain.max():.3g}", f"{relative.min():.3g}–{relative.max():.3g}",
                     noise.gain_spread, float(outcome.simulation.generalisation_error[-1].mean()),
                     float(outcome.ode.generalisation_error[-1].mean()),
                     float(outcome.ode_noiseless.generalisation_error[-1].mean()), a.median_rel_dev,
                     a.floor_ratio, f"{a.floor_band:.3g} · {a.floor_tolerance:.3g}", a.floor_ratio_noiseless,
                     f"{a.curve_within:.0%} / {a.curve_within_noiseless:.0%}", "holds" if a.holds else "breaks"])
        key[label] = {**dataclasses.asdict(a), "snr_db": noise.snr_db, "gain_spread": noise.gain_spread,
                      "mode": noise.mode}
    return rows, key


def figure(outcomes: list[Outcome], settings: Settings, key: dict[str, Any]) -> Figure:
    n = len(outcomes)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.4 * cols, 3.0 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    for ax, outcome in zip(axes, outcomes, strict=False):
        t = outcome.simulation.t
        sim = outcome.simulation.generalisation_error
        ax.plot(t, sim, color="0.7", lw=0.6)
        ax.errorbar(t, sim.mean(1), yerr=sim.std(1), fmt="o", ms=3, mfc="none", color="k", elinewidth=0.7,
                    label="simulation (mean ± sd)")
        ax.plot(t, outcome.ode.generalisation_error.mean(1), color="C3", lw=1.6, label="ODE, measured s")
        ax.plot(t, outcome.ode_noiseless.generalisation_error.mean(1), color="C0", lw=1.1, ls="--",
                label="ODE, no noise")
        info = key[outcome.setting.label]
        snr = outcome.noise.snr_db
        ax.set_title(f"{outcome.setting.label}\nSNR {snr:.1f} dB, floor ratio {info['floor_ratio']:.2f} "
                     f"({'holds' if info['holds'] else 'breaks'})", fontsize=8.5)
        ax.set(xscale="log", yscale="log")
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("generalisation error ε_g")
    for ax in axes[-cols:]:
        ax.set_xlabel("t = steps / N")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"DFA feedback through a device: erf, K = {settings.K}, M = {settings.M}, N = {settings.N}, "
                 f"η = {settings.lr}, {settings.seeds} seeds (grey: each seed)", fontsize=10)
    return fig


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, seeds=Settings.seeds)
    parser.add_argument("--jobs", type=int, default=1, help="processes, one device setting each (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    settings = QUICK if args.quick else Settings()
    if args.seeds is not None:
        settings = dataclasses.replace(settings, seeds=args.seeds)
    start = time.perf_counter()
    outcomes = run(settings, jobs=args.jobs)
    rows, key = summarise(outcomes)
    wall = time.perf_counter() - start
    arrays = {o.setting.label.replace(" ", "_").replace(",", "").replace("=", "").replace(".", "p"): {
        "simulation": o.simulation.arrays(), "ode": o.ode.arrays(), "ode_noiseless": o.ode_noiseless.arrays(),
        "exact_simulation": o.exact.arrays(),
        "gain": o.noise.gain, "levels": o.noise.levels(), "b": o.noise.b(), "exact_b": o.noise.reference[:, 0],
        "additive": o.noise.additive, "proportional": o.noise.proportional, "gain_by_size": o.noise.gain_by_size,
    } for o in outcomes}
    table = (markdown_table(HEADER, rows)
             + f"\nDFA, erf, K = {settings.K}, M = {settings.M}, N = {settings.N}, η_w = η_v = {settings.lr}, "
               f"{settings.seeds} seeds, t up to {settings.t_max:g}, feedback seed {settings.feedback_seed}; "
               f"wall time {wall:.0f} s. Gain and noise measured on {settings.noise_samples} teacher–student-like "
               f"errors spanning 3 decades. Floor ratio: simulation over ODE of ε_g at the last 3 grid points "
               f"(geometric mean over seeds, each seed against the ODE from its own start). The prediction holds "
               f"when the floor ratio is within the allowed factor: its 95% confidence band over seeds times the "
               f"floor ratio of the exact-feedback simulation (same b, no device) against the noiseless ODE, "
               f"the finite-N error of the ODE itself. Curve within: share of the time grid where the mean log "
               f"ratio is within the same allowance at that time, for the ODE with the measured noise and "
               f"without it. Gain spread: the largest change of the gain between quartiles of the error size, "
               f"beyond 4 standard errors (0 when the feedback does not depend on the error's size).\n")
    settings_dict = dataclasses.asdict(settings)
    paths = write_results(NAME, arrays=arrays, attrs={"settings": settings_dict, "wall_s": wall,
                                                      "agreement": key},
                          figure=figure(outcomes, settings, key), table=table, out=args.out,
                          title="Teacher–student DFA through a feedback device: ODE vs simulation")
    print(table)
    return paths


if __name__ == "__main__":
    main()
