"""Align, then memorise: ε_g(t) and cos(v, b)(t) for BP and DFA, ODE curves over online-SGD simulations.

Soft-committee teacher–student model with erf units (SPEC §5), a student of the teacher's size (K = M) and a
larger one (K > M). Every seed is its own initialisation and SGD stream; the ODE starts from each seed's exact
initial overlaps, so ODE means and simulation means are over the same starts.

    python -m experiments.align_then_memorise            # full figure (N = 1000, t up to 1000; minutes)
    python -m experiments.align_then_memorise --quick    # seconds
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments._common import markdown_table, parse_settings, write_results
from optodfa.theory import Dynamics, OrderParameters, Trajectory, draw_weights, integrate, log_time_grid, simulate

NAME = "align_then_memorise"
COLOURS = {"bp": "tab:blue", "dfa": "tab:red"}


@dataclasses.dataclass(frozen=True)
class Settings:
    N: int = 1000
    t_max: float = 1000.0
    t_min: float = 0.01
    points: int = 36
    seeds: int = 8
    lr: float = 0.5
    init: float = 0.01            # std of initial student weights: small, so the start is a plateau
    sizes: tuple[tuple[int, int], ...] = ((2, 2), (4, 2))
    sim_seed: int = 1
    feedback_seed: int = 1        # b = (2.07, -1.75, -1.85, -1.52, -0.94, 1.36)[:K]: both signs present


QUICK = Settings(N=200, t_max=20.0, t_min=0.05, points=10, seeds=2)


def run(settings: Settings) -> dict[tuple[int, int, str], tuple[Trajectory, Trajectory]]:
    """ODE and simulation trajectories (batch = seeds) for every size and algorithm."""
    out = {}
    times = log_time_grid(settings.t_max, points=settings.points, t_min=settings.t_min, N=settings.N)
    for K, M in settings.sizes:
        weights = draw_weights(K, M, settings.N, seeds=list(range(settings.seeds)), init_w=settings.init,
                               init_v=settings.init, feedback_seed=settings.feedback_seed)
        for algorithm in ("bp", "dfa"):
            dynamics = Dynamics(algorithm=algorithm, lr_w=settings.lr, lr_v=settings.lr)
            start = time.perf_counter()
            ode = integrate(dynamics, OrderParameters.from_weights(weights), times)
            sim = simulate(weights, dynamics, times, seed=settings.sim_seed)
            print(f"K={K} M={M} {algorithm}: ODE {ode.info['wall_s']:.1f} s, simulation {sim.info['wall_s']:.1f} s "
                  f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
            out[K, M, algorithm] = (ode, sim)
    return out


def alignment_time(t: np.ndarray, cos: np.ndarray) -> float:
    """First time the mean cos(v, b) reaches 90% of its largest value: the end of the alignment phase."""
    return float(t[np.argmax(cos >= 0.9 * cos.max())])


def summarise(results: dict) -> tuple[list[list], dict[str, float]]:
    rows, key_figures = [], {}
    for (K, M, algorithm), (ode, sim) in results.items():
        t = ode.t
        eg_ode, eg_sim = ode.generalisation_error.mean(1), sim.generalisation_error.mean(1)
        cos_ode, cos_sim = ode.cos_vb.mean(1), sim.cos_vb.mean(1)
        # Both algorithms are read at the end of DFA's alignment phase (BP has no such phase).
        dfa_ode = results[K, M, "dfa"][0]
        t_align = alignment_time(dfa_ode.t, dfa_ode.cos_vb.mean(1))
        at = int(np.searchsorted(t, t_align))
        d_eg = float(np.max(np.abs(eg_sim - eg_ode)))
        d_cos = float(np.max(np.abs(cos_sim - cos_ode)))
        rows.append([f"{K}", f"{M}", algorithm.upper(), t_align, eg_ode[0], eg_ode[at] / eg_ode[0], eg_ode[-1],
                     eg_sim[-1], cos_ode[0], cos_ode[at], cos_ode[-1], cos_sim[-1],
                     float(sim.sign_agreement[-1].mean()), d_eg, d_cos])
        key_figures[f"K{K}M{M}_{algorithm}_final_cos_sim"] = float(cos_sim[-1])
        key_figures[f"K{K}M{M}_{algorithm}_max_dev_eg"] = d_eg
        key_figures[f"K{K}M{M}_{algorithm}_max_dev_cos"] = d_cos
    return rows, key_figures


HEADER = ["K", "M", "algorithm", "t_align", "ε_g(0)", "ε_g(t_align)/ε_g(0)", "ε_g(end) ODE", "ε_g(end) sim",
          "cos(0)", "cos(t_align)", "cos(end) ODE", "cos(end) sim", "sign agreement (sim)",
          "max |Δε_g| ODE–sim", "max |Δcos| ODE–sim"]


def figure(results: dict, settings: Settings) -> Figure:
    sizes = settings.sizes
    fig = Figure(figsize=(5.6 * len(sizes), 7.5), layout="constrained")
    axes = fig.subplots(2, len(sizes), squeeze=False, sharex=True)
    for col, (K, M) in enumerate(sizes):
        for algorithm in ("bp", "dfa"):
            ode, sim = results[K, M, algorithm]
            t = np.maximum(ode.t, settings.t_min / 2)  # t = 0 drawn at the left edge of the log axis
            colour = COLOURS[algorithm]
            for row, (o, s) in enumerate([(ode.generalisation_error, sim.generalisation_error),
                                          (ode.cos_vb, sim.cos_vb)]):
                ax = axes[row, col]
                ax.plot(t, o.mean(1), color=colour, lw=1.8, label=f"{algorithm.upper()} ODE")
                ax.errorbar(t, s.mean(1), yerr=s.std(1), fmt="o", ms=3.5, color=colour, mfc="none", elinewidth=0.8,
                            capsize=0, label=f"{algorithm.upper()} simulation")
            if algorithm == "dfa":
                t_align = alignment_time(ode.t, ode.cos_vb.mean(1))
                for row in range(2):
                    axes[row, col].axvline(t_align, color="grey", ls=":", lw=1)
                axes[1, col].annotate("align | memorise", (t_align, -0.95), color="grey", fontsize=8, ha="center")
        axes[0, col].set(xscale="log", yscale="log", ylabel="generalisation error ε_g",
                         title=f"erf, K = {K}, M = {M} (N = {settings.N}, η = {settings.lr})")
        axes[1, col].set(xscale="log", xlabel="time t = steps / N", ylabel="cos(v, b)", ylim=(-1.05, 1.05))
        axes[0, col].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Align, then memorise: ODE lines, simulation mean ± std over {settings.seeds} seeds", fontsize=11)
    return fig


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args, settings = parse_settings(argv, __doc__.splitlines()[0], Settings(), QUICK)
    results = run(settings)
    rows, key_figures = summarise(results)
    arrays = {f"K{K}_M{M}_{alg}": {"ode": ode.arrays(), "simulation": sim.arrays()}
              for (K, M, alg), (ode, sim) in results.items()}
    table = (markdown_table(HEADER, rows)
             + f"\nt_align: first time DFA's ODE mean cos(v, b) reaches 90% of its maximum (the end of the "
               f"alignment phase); both algorithms are read there. Means over "
               f"{settings.seeds} seeds; N = {settings.N}, η_w = η_v = {settings.lr}, initial weights std "
               f"{settings.init}. Deviations are max over the time grid of |simulation mean − ODE mean|.\n")
    paths = write_results(NAME, arrays=arrays, attrs={"settings": dataclasses.asdict(settings), **key_figures},
                          figure=figure(results, settings), table=table, out=args.out,
                          title="Align, then memorise (BP vs DFA, ODE vs simulation)")
    print(table)
    return paths


if __name__ == "__main__":
    main()
