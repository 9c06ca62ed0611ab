"""Wall time of the teacher–student ODEs and of the online-SGD simulation for one DFA run (issue 4).

Case: DFA, erf, K = M = 4, η_w = η_v = 0.2, from t = 0 to t = 1000, initial overlaps of N = 1000 weights.
Timed in one process: the fixed-step Euler scheme with dt = 1/N (the classical one, one ODE step per SGD step),
each adaptive scipy solver, and the simulation itself at N = 1000 (one replica, same initial weights). Every
figure is a median over repeats; ratios are against Euler. The accuracy column is the largest |Δε_g| against a
tight DOP853 reference on the output grid. Target (issue 4): the adaptive ODE under 10 s on one core.

Run: ``python -m benchmarks.ode [--t-max 1000] [--repeats 3] [--quick]`` (``--quick``: t = 20, one repeat).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from optodfa.theory import Dynamics, OrderParameters, draw_weights, integrate, log_time_grid, simulate

K = M = 4
N = 1000
LR = 0.2


def _median_time(run, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t-max", type=float, default=1000.0, help="final time (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the fast variants (default 3)")
    parser.add_argument("--slow-repeats", type=int, default=1, help="repeats of Euler and the simulation (1)")
    parser.add_argument("--quick", action="store_true", help="t = 20 and one repeat, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.t_max, args.repeats, args.slow_repeats = 20.0, 1, 1

    weights = draw_weights(K, M, N, seeds=0, init_w=0.01, init_v=0.01)
    initial = OrderParameters.from_weights(weights).index(0)
    times = log_time_grid(args.t_max, points=30, t_min=0.01, N=N)
    dynamics = Dynamics(algorithm="dfa", lr_w=LR, lr_v=LR)
    print(f"DFA, erf, K = M = {K}, η = {LR}, t = 0 … {args.t_max:g}, N = {N}; one core (BLAS limited to 1 thread)")

    with threadpool_limits(limits=1):
        reference = integrate(dynamics, initial, times, solver="dop853", rtol=1e-10, atol=1e-12)
        rows = []
        euler_s, euler = _median_time(lambda: integrate(dynamics, initial, times, solver="euler", dt=1.0 / N),
                                      args.slow_repeats)
        rows.append(("euler dt=1/N", euler_s, euler.info["nfev"], euler.generalisation_error))
        for solver in ("rk45", "dop853", "lsoda", "rk23"):
            seconds, traj = _median_time(lambda s=solver: integrate(dynamics, initial, times, solver=s),
                                         args.repeats)
            rows.append((f"{solver} (rtol 1e-6)", seconds, traj.info["nfev"], traj.generalisation_error))
        sim_s, sim = _median_time(lambda: simulate(weights, dynamics, times, seed=1), args.slow_repeats)
        rows.append((f"simulation N={N}", sim_s, int(args.t_max * N), sim.generalisation_error[:, 0]))

    eg_ref = reference.generalisation_error
    print(f"{'method':<22}{'wall s':>10}{'vs euler':>10}{'RHS evals':>12}{'max|Δε_g|':>12}")
    for name, seconds, evaluations, eg in rows:
        print(f"{name:<22}{seconds:>10.3f}{seconds / euler_s:>10.4f}{evaluations:>12d}"
              f"{float(np.max(np.abs(eg - eg_ref))):>12.2e}")
    print("(simulation: 'RHS evals' is SGD steps; its Δε_g is one replica's SGD fluctuation, not solver error)")


if __name__ == "__main__":
    main()
