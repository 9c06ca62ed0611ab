"""Noisy feedback: ε_g(t) and cos(v, b)(t) of DFA for several feedback noise levels s, ODE against simulation.

Two noise models (docs/theory.md derives their ODE terms): ``additive``, noise of fixed size s on each projected
feedback component (f = b ε + s ζ), and ``redrawn``, the feedback vector redrawn as b + s ξ every step
(f = (b + s ξ) ε, which is also what noise proportional to the error, as after an optical decoder that restores
the error's scale, amounts to). For ``redrawn`` the signal-to-noise ratio of the feedback is
``20 log10(rms(b) / s)`` dB whatever the error, which is how a device's noise level maps to s.

    python -m experiments.noisy_feedback            # full (N = 1000, t up to 500; minutes)
    python -m experiments.noisy_feedback --quick    # seconds
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from experiments._common import markdown_table, parse_settings, write_results
from optodfa.theory import (
    FEEDBACK_NOISE_MODES,
    Dynamics,
    OrderParameters,
    Trajectory,
    draw_weights,
    integrate,
    log_time_grid,
    simulate,
)

NAME = "noisy_feedback"


@dataclasses.dataclass(frozen=True)
class Settings:
    K: int = 4
    M: int = 2
    N: int = 1000
    t_max: float = 500.0
    t_min: float = 0.05
    points: int = 24
    seeds: int = 4
    lr: float = 0.5
    init: float = 0.01
    levels: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    sim_seed: int = 1
    feedback_seed: int = 1        # b = (2.07, -1.75, -1.85, -1.52): both signs present, rms(b) = 1.81


QUICK = Settings(N=200, t_max=10.0, t_min=0.1, points=6, seeds=2, levels=(0.0, 2.0))


def run(settings: Settings) -> dict[tuple[str, float], tuple[Trajectory, Trajectory]]:
    """ODE and simulation (batch = seeds) for every noise model and level; level 0 is run once, under both keys."""
    weights = draw_weights(settings.K, settings.M, settings.N, seeds=list(range(settings.seeds)),
                           init_w=settings.init, init_v=settings.init, feedback_seed=settings.feedback_seed)
    times = log_time_grid(settings.t_max, points=settings.points, t_min=settings.t_min, N=settings.N)
    initial = OrderParameters.from_weights(weights)
    out: dict[tuple[str, float], tuple[Trajectory, Trajectory]] = {}
    for mode in FEEDBACK_NOISE_MODES:
        for s in settings.levels:
            if s == 0.0 and out:
                out[mode, s] = next(iter(out.values()))
                continue
            dynamics = Dynamics(algorithm="dfa", lr_w=settings.lr, lr_v=settings.lr, feedback_noise=s,
                                feedback_noise_mode=mode)
            ode = integrate(dynamics, initial, times)
            sim = simulate(weights, dynamics, times, seed=settings.sim_seed)
            print(f"{mode} s={s:g}: ODE {ode.info['wall_s']:.1f} s, simulation {sim.info['wall_s']:.1f} s",
                  file=sys.stderr)
            out[mode, s] = (ode, sim)
    return out


def snr_db(b: np.ndarray, s: float) -> float:
    """Feedback SNR of the redrawn model, ``20 log10(rms(b)/s)`` dB (inf for s = 0)."""
    return float("inf") if s == 0 else float(20 * np.log10(np.sqrt(np.mean(b**2)) / s))


def summarise(results: dict, settings: Settings) -> tuple[list[list], dict[str, float]]:
    rows, key = [], {}
    for (mode, s), (ode, sim) in results.items():
        b = ode.state.b[0, 0]
        eg_o, eg_s = ode.generalisation_error.mean(1), sim.generalisation_error.mean(1)
        cos_o, cos_s = ode.cos_vb.mean(1), sim.cos_vb.mean(1)
        d_eg = float(np.max(np.abs(eg_s - eg_o)))
        d_eg_rel = float(np.median(np.abs(eg_s - eg_o) / eg_o))
        d_cos = float(np.max(np.abs(cos_s - cos_o)))
        rows.append([mode, s, snr_db(b, s) if mode == "redrawn" else "—", eg_o[-1], eg_s[-1], cos_o[-1], cos_s[-1],
                     d_eg, d_eg_rel, d_cos])
        key[f"{mode}_s{s:g}_max_dev_eg"] = d_eg
        key[f"{mode}_s{s:g}_median_rel_dev_eg"] = d_eg_rel
        key[f"{mode}_s{s:g}_max_dev_cos"] = d_cos
    return rows, key


HEADER = ["noise model", "s", "feedback SNR (dB)", "final ε_g ODE", "final ε_g sim", "final cos(v,b) ODE",
          "final cos(v,b) sim", "max |Δε_g| ODE–sim", "median |Δε_g|/ε_g", "max |Δcos| ODE–sim"]


def figure(results: dict, settings: Settings) -> Figure:
    fig = Figure(figsize=(11.5, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    cmap = colormaps["viridis"]
    for col, mode in enumerate(FEEDBACK_NOISE_MODES):
        for i, s in enumerate(settings.levels):
            ode, sim = results[mode, s]
            colour = cmap(i / max(1, len(settings.levels) - 1) * 0.9)
            t = np.maximum(ode.t, settings.t_min / 2)
            b = ode.state.b[0, 0]
            label = f"s = {s:g}" + (f" ({snr_db(b, s):.1f} dB)" if mode == "redrawn" and s else "")
            for row, (o, m) in enumerate([(ode.generalisation_error, sim.generalisation_error),
                                          (ode.cos_vb, sim.cos_vb)]):
                ax = axes[row, col]
                ax.plot(t, o.mean(1), color=colour, lw=1.6, label=f"{label} ODE")
                ax.errorbar(t, m.mean(1), yerr=m.std(1), fmt="o", ms=3.2, mfc="none", color=colour, elinewidth=0.7)
        title = ("additive: f = b ε + s ζ" if mode == "additive" else "redrawn: f = (b + s ξ) ε")
        axes[0, col].set(xscale="log", yscale="log", ylabel="generalisation error ε_g", title=title)
        axes[1, col].set(xscale="log", xlabel="time t = steps / N", ylabel="cos(v, b)", ylim=(-1.05, 1.05))
        axes[0, col].legend(fontsize=8, loc="lower left", title="lines: ODE; circles: simulation", title_fontsize=8)
    fig.suptitle(f"DFA with noisy feedback: erf, K = {settings.K}, M = {settings.M}, N = {settings.N}, "
                 f"η = {settings.lr}; simulation mean ± std over {settings.seeds} seeds", fontsize=11)
    return fig


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args, settings = parse_settings(argv, __doc__.splitlines()[0], Settings(), QUICK)
    results = run(settings)
    rows, key = summarise(results, settings)
    arrays = {f"{mode}_s{s:g}": {"ode": ode.arrays(), "simulation": sim.arrays()}
              for (mode, s), (ode, sim) in results.items()}
    table = (markdown_table(HEADER, rows)
             + f"\nDFA, K = {settings.K}, M = {settings.M}, N = {settings.N}, η_w = η_v = {settings.lr}, "
               f"{settings.seeds} seeds, final time t = {settings.t_max:g}. Deviations compare the simulation mean "
               f"with the ODE mean on the time grid (maximum, or median of the relative deviation). The largest ones "
               f"sit where a plateau ends: SGD fluctuations at finite N advance or delay the escape.\n")
    paths = write_results(NAME, arrays=arrays, attrs={"settings": dataclasses.asdict(settings), **key},
                          figure=figure(results, settings), table=table, out=args.out,
                          title="Noisy feedback: ODE vs simulation")
    print(table)
    return paths


if __name__ == "__main__":
    main()
