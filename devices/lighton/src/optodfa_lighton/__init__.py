"""optodfa driver for LightOn OPUs through lightonml (registered as the ``lighton`` device)."""

from optodfa_lighton.driver import LightOnDevice, build

__all__ = ["LightOnDevice", "build"]
