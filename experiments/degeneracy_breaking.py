"""Degeneracy breaking: with K > M many zero-error students exist; DFA ends at the one most aligned with b.

Soft-committee erf model (SPEC §5), a student wider than its teacher, many initialisation seeds sharing one
teacher and one feedback vector b. For BP and DFA: the final cos(v, b), the fraction of units whose v_k has the
sign of b_k, and the cross-seed cosine of the final second layers (SPEC §4), from online SGD and from the ODEs
started at the same initial overlaps.

    python -m experiments.degeneracy_breaking            # full (32 seeds, N = 500, t up to 500; minutes)
    python -m experiments.degeneracy_breaking --quick    # seconds
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments._common import markdown_table, parse_settings, write_results
from optodfa.theory import Dynamics, OrderParameters, Trajectory, draw_weights, integrate, log_time_grid, simulate

NAME = "degeneracy_breaking"
COLOURS = {"bp": "tab:blue", "dfa": "tab:red"}


@dataclasses.dataclass(frozen=True)
class Settings:
    K: int = 6
    M: int = 2
    N: int = 500
    t_max: float = 500.0
    points: int = 20
    seeds: int = 32
    lr: float = 0.5
    init: float = 0.01
    sim_seed: int = 1
    feedback_seed: int = 1        # b = (2.07, -1.75, -1.85, -1.52, -0.94, 1.36)[:K]: both signs present


QUICK = Settings(N=100, t_max=20.0, points=6, seeds=4)


def run(settings: Settings) -> dict[str, tuple[Trajectory, Trajectory]]:
    """ODE and simulation (batch = seeds) for BP and DFA."""
    weights = draw_weights(settings.K, settings.M, settings.N, seeds=list(range(settings.seeds)),
                           init_w=settings.init, init_v=settings.init, feedback_seed=settings.feedback_seed)
    times = log_time_grid(settings.t_max, points=settings.points, t_min=0.1, N=settings.N)
    out = {}
    for algorithm in ("bp", "dfa"):
        dynamics = Dynamics(algorithm=algorithm, lr_w=settings.lr, lr_v=settings.lr)
        ode = integrate(dynamics, OrderParameters.from_weights(weights), times)
        sim = simulate(weights, dynamics, times, seed=settings.sim_seed)
        print(f"{algorithm}: ODE {ode.info['wall_s']:.1f} s, simulation {sim.info['wall_s']:.1f} s", file=sys.stderr)
        out[algorithm] = (ode, sim)
    return out


def cross_seed_cosine(v: np.ndarray) -> float:
    """Mean cosine between the second layers of distinct seeds, v (S, K)."""
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    gram = unit @ unit.T
    upper = np.triu_indices(len(v), k=1)
    return float(gram[upper].mean())


def summarise(results: dict) -> tuple[list[list], dict[str, float]]:
    rows, key = [], {}
    for algorithm, (ode, sim) in results.items():
        figures = {}
        for source, traj in (("sim", sim), ("ode", ode)):
            final = traj.final()
            figures[source] = (traj.cos_vb[-1], traj.sign_agreement[-1], cross_seed_cosine(final.v),
                               np.median(traj.generalisation_error[-1]))
        (cs, ss, xs, es), (co, so, xo, eo) = figures["sim"], figures["ode"]
        rows.append([algorithm.upper(), f"{cs.mean():.3f} ± {cs.std():.3f}", f"{co.mean():.3f} ± {co.std():.3f}",
                     float(ss.mean()), float(so.mean()), float(np.mean(ss == 1.0)), xs, xo, float(es), float(eo)])
        key.update({f"{algorithm}_final_cos_sim_mean": float(cs.mean()), f"{algorithm}_sign_agreement_sim": float(
            ss.mean()), f"{algorithm}_cross_seed_cos_sim": xs})
    return rows, key


HEADER = ["algorithm", "final cos(v,b) sim (mean ± std)", "ODE", "sign agreement sim", "ODE",
          "seeds with all signs of b (sim)", "cross-seed cos(v) sim", "ODE", "median final ε_g sim", "ODE"]


def figure(results: dict, settings: Settings) -> Figure:
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax_time, ax_hist, ax_scatter = fig.subplots(1, 3)
    bins = np.linspace(-1, 1, 41)
    for algorithm, (ode, sim) in results.items():
        colour, label = COLOURS[algorithm], algorithm.upper()
        t = np.maximum(sim.t, 0.05)
        ax_time.plot(t, ode.cos_vb.mean(1), color=colour, lw=1.8, label=f"{label} ODE (mean)")
        ax_time.errorbar(t, sim.cos_vb.mean(1), yerr=sim.cos_vb.std(1), fmt="o", ms=3.5, mfc="none", color=colour,
                         elinewidth=0.8, label=f"{label} simulation (mean ± std)")
        ax_hist.hist(sim.cos_vb[-1], bins=bins, color=colour, alpha=0.6, label=f"{label} simulation")
        # ODE values as a rug under the histogram, one row per algorithm.
        ax_hist.plot(ode.cos_vb[-1], np.full(settings.seeds, -1.0 if algorithm == "bp" else -2.0), "|",
                     color=colour, ms=8, label=f"{label} ODE")
        final = sim.final()
        ax_scatter.scatter(final.b.ravel(), final.v.ravel(), s=9, color=colour, alpha=0.6, label=label)
    ax_time.set(xscale="log", xlabel="time t = steps / N", ylabel="cos(v, b)", ylim=(-1.05, 1.05),
                title="alignment of the second layer with b")
    ax_time.legend(fontsize=8, loc="lower right")
    ax_hist.set(xlabel="final cos(v, b)", ylabel="seeds", title=f"final cos(v, b), {settings.seeds} seeds")
    ax_hist.legend(fontsize=8, loc="upper left")
    ax_scatter.axhline(0, color="grey", lw=0.6)
    ax_scatter.axvline(0, color="grey", lw=0.6)
    ax_scatter.set(xlabel="feedback b_k", ylabel="final v_k", title="every unit of every seed (simulation)")
    ax_scatter.legend(fontsize=8)
    fig.suptitle(f"Degeneracy breaking: erf, K = {settings.K} > M = {settings.M}, N = {settings.N}, "
                 f"η = {settings.lr}, t = {settings.t_max:g}", fontsize=11)
    return fig


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args, settings = parse_settings(argv, __doc__.splitlines()[0], Settings(), QUICK)
    if settings.seeds < 2:
        print(f"--seeds must be at least 2 (cross-seed cosines need pairs), got {settings.seeds}", file=sys.stderr)
        raise SystemExit(2)
    results = run(settings)
    rows, key = summarise(results)
    arrays = {alg: {"ode": ode.arrays(), "simulation": sim.arrays()} for alg, (ode, sim) in results.items()}
    table = (markdown_table(HEADER, rows)
             + f"\n{settings.seeds} initialisation seeds sharing the teacher and b; K = {settings.K}, "
               f"M = {settings.M}, N = {settings.N}, η_w = η_v = {settings.lr}, final time t = {settings.t_max:g}, "
               f"b = {np.round(results['dfa'][0].state.b[0, 0], 2).tolist()} (feedback seed "
               f"{settings.feedback_seed}). "
               f"Sign agreement: fraction of units with sign(v_k) = sign(b_k), averaged over seeds. Cross-seed "
               f"cos(v): mean cosine between the final v of two seeds.\n")
    paths = write_results(NAME, arrays=arrays, attrs={"settings": dataclasses.asdict(settings), **key},
                          figure=figure(results, settings), table=table, out=args.out,
                          title="Degeneracy breaking (K > M): DFA vs BP")
    print(table)
    return paths


if __name__ == "__main__":
    main()
