"""optodfa: Direct Feedback Alignment with the feedback projection computed by an optical processing unit."""

from optodfa.device import Acquisition, Counters, FeedbackError, NonFiniteError, OpticalDevice, Projector
from optodfa.dfa import DFAModel, Feedback, FeedbackPoint, convert
from optodfa.registry import ProjectorSpec, available_devices, build_projector, register_device

__version__ = "0.1.0"

__all__ = [
    "Acquisition",
    "Counters",
    "DFAModel",
    "Feedback",
    "FeedbackError",
    "FeedbackPoint",
    "NonFiniteError",
    "OpticalDevice",
    "Projector",
    "ProjectorSpec",
    "__version__",
    "available_devices",
    "build_projector",
    "convert",
    "register_device",
]
