"""Online learning in the teacher–student model: exact ODEs and online-SGD simulation, for BP and DFA (SPEC §5).

Stands alone: it depends on :mod:`optodfa.seeding` and :mod:`optodfa.validation` only, never on the DFA plumbing
or the device simulators. Typical use::

    from optodfa.theory import Dynamics, draw_weights, OrderParameters, integrate, simulate, log_time_grid

    weights = draw_weights(K=2, M=2, N=1000, seeds=[0] * 8)          # 8 replicas from one initialisation
    times = log_time_grid(100.0, N=1000)
    dynamics = Dynamics(algorithm="dfa", lr_w=0.5, lr_v=0.5)
    ode = integrate(dynamics, OrderParameters.from_weights(weights), times)
    sim = simulate(weights, dynamics, times, seed=1)
    ode.generalisation_error, sim.generalisation_error                 # (n_t, 8) each
"""

from optodfa.theory.dynamics import ALGORITHMS as ALGORITHMS
from optodfa.theory.dynamics import FEEDBACK_NOISE_MODES as FEEDBACK_NOISE_MODES
from optodfa.theory.dynamics import Dynamics as Dynamics
from optodfa.theory.integrals import ACTIVATIONS as ACTIVATIONS
from optodfa.theory.integrals import covariance as covariance
from optodfa.theory.integrals import error_readout as error_readout
from optodfa.theory.integrals import generalisation_error as generalisation_error
from optodfa.theory.integrals import i2 as i2
from optodfa.theory.integrals import i3 as i3
from optodfa.theory.integrals import i4 as i4
from optodfa.theory.integrals import j2 as j2
from optodfa.theory.noise import feedback_noise_from_snr as feedback_noise_from_snr
from optodfa.theory.noise import feedback_second_moment as feedback_second_moment
from optodfa.theory.ode import SOLVERS as SOLVERS
from optodfa.theory.ode import IntegrationError as IntegrationError
from optodfa.theory.ode import derivatives as derivatives
from optodfa.theory.ode import integrate as integrate
from optodfa.theory.order_parameters import OrderParameters as OrderParameters
from optodfa.theory.order_parameters import Weights as Weights
from optodfa.theory.order_parameters import draw_weights as draw_weights
from optodfa.theory.order_parameters import initial_order_parameters as initial_order_parameters
from optodfa.theory.simulation import simulate as simulate
from optodfa.theory.timegrid import log_time_grid as log_time_grid
from optodfa.theory.timegrid import steps_at as steps_at
from optodfa.theory.trajectory import Trajectory as Trajectory

__all__ = [
    "ACTIVATIONS",
    "ALGORITHMS",
    "FEEDBACK_NOISE_MODES",
    "SOLVERS",
    "Dynamics",
    "IntegrationError",
    "OrderParameters",
    "Trajectory",
    "Weights",
    "covariance",
    "derivatives",
    "draw_weights",
    "error_readout",
    "feedback_noise_from_snr",
    "feedback_second_moment",
    "generalisation_error",
    "i2",
    "i3",
    "i4",
    "initial_order_parameters",
    "integrate",
    "j2",
    "log_time_grid",
    "simulate",
    "steps_at",
]
