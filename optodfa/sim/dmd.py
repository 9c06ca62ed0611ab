"""The digital micromirror device: where signal elements and the reference region sit, and which frames it shows.

The DMD has ``rows × cols`` binary mirrors, numbered row by row. A *signal element* (one entry of a binary frame)
drives a macropixel of ``macropixel`` consecutive mirrors: element ``j`` covers mirrors
``[j·m, (j+1)·m)``. The reference region is the last ``reference_mirrors`` mirrors of the DMD, disjoint from the
signal region by construction (the layout refuses to build when they would overlap). Mirrors in between stay dark.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from optodfa.validation import check_int

__all__ = ["DMDLayout"]


@dataclasses.dataclass(frozen=True)
class DMDLayout:
    """Signal and reference regions on a DMD of ``rows × cols`` mirrors.

    Attributes:
        rows, cols: mirrors along each side of the DMD.
        macropixel: mirrors driven by one signal element (``m``).
        signal_elements: signal elements a frame holds (the device's ``input_pixels``).
        reference_mirrors: mirrors in the reference region (lit together when a frame asks for the reference).
    """

    rows: int
    cols: int
    macropixel: int
    signal_elements: int
    reference_mirrors: int

    def __post_init__(self) -> None:
        check_int("dmd.rows", self.rows, low=1)
        check_int("dmd.cols", self.cols, low=1)
        check_int("dmd.macropixel", self.macropixel, low=1)
        check_int("signal elements", self.signal_elements, low=1)
        check_int("dmd.reference_mirrors", self.reference_mirrors, low=1)
        if self.signal_mirrors + self.reference_mirrors > self.mirrors:
            raise ValueError(
                f"the layout does not fit the DMD: {self.signal_elements} signal elements x {self.macropixel} "
                f"mirrors (dmd.macropixel) + {self.reference_mirrors} reference mirrors (dmd.reference_mirrors) = "
                f"{self.signal_mirrors + self.reference_mirrors} mirrors > {self.rows} x {self.cols} = "
                f"{self.mirrors} mirrors of the DMD; lower dmd.macropixel or dmd.reference_mirrors")

    @property
    def mirrors(self) -> int:
        """Mirrors on the DMD."""
        return self.rows * self.cols

    @property
    def signal_mirrors(self) -> int:
        """Mirrors covered by the signal region."""
        return self.signal_elements * self.macropixel

    @property
    def reference_region(self) -> range:
        """Mirror indices of the reference region."""
        return range(self.mirrors - self.reference_mirrors, self.mirrors)

    def element_mirrors(self, element: int) -> range:
        """Mirror indices driven by signal element ``element``."""
        check_int("element", element, low=0, high=self.signal_elements - 1)
        return range(element * self.macropixel, (element + 1) * self.macropixel)

    def check_frames(self, frames: Any) -> torch.Tensor:
        """Validate a batch of frames and return it unchanged.

        Args:
            frames: ``(n, signal_elements)`` tensor with values in {0, 1} (any real or bool dtype; bool frames are
                binary by type and skip the value check, which on a GPU would cost a host round trip).

        Raises:
            TypeError: not a tensor, or complex.
            ValueError: wrong shape (with the reason: exceeds the DMD, touches the reference region, or does not
                match the signal region) or values other than 0 and 1.
        """
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"frames must be a torch.Tensor of shape (n, {self.signal_elements}), "
                            f"got {type(frames).__name__}")
        if frames.is_complex():
            raise TypeError(f"frames must be real (binary 0/1), got dtype {frames.dtype}")
        if frames.ndim != 2:
            raise ValueError(f"frames must have shape (n, {self.signal_elements}), got {tuple(frames.shape)}")
        width = frames.shape[1]
        if width != self.signal_elements:
            raise ValueError(self._width_message(width))
        if frames.dtype != torch.bool and bool(((frames != 0) & (frames != 1)).any()):
            bad = frames[(frames != 0) & (frames != 1)]
            shown = ", ".join(f"{float(v):g}" for v in bad[:3].tolist())
            raise ValueError(f"frames must be binary (every value 0 or 1) for an optical device; got "
                             f"{bad.numel()} other value(s), e.g. {shown}")
        return frames

    def lit_mirrors(self, frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``(n,)`` mirrors lit by each frame (macropixels counted in mirrors, plus the reference when on)."""
        signal = frames.sum(dim=1, dtype=torch.float32) * self.macropixel
        return signal + reference.to(torch.float32) * self.reference_mirrors

    def _width_message(self, width: int) -> str:
        needed = width * self.macropixel
        first_ref = self.reference_region.start
        if needed > self.mirrors:
            return (f"frames of {width} elements need {width} x {self.macropixel} = {needed} mirrors but the DMD has "
                    f"{self.rows} x {self.cols} = {self.mirrors}; this device takes frames of "
                    f"{self.signal_elements} elements")
        if needed > first_ref:
            return (f"frames of {width} elements cover mirrors 0..{needed - 1} and touch the reference region "
                    f"(mirrors {first_ref}..{self.mirrors - 1}); this device takes frames of "
                    f"{self.signal_elements} elements (macropixel {self.macropixel} mirrors)")
        return (f"frames must have {self.signal_elements} elements (the device's signal region), got {width}")

    def describe(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols, "mirrors": self.mirrors, "macropixel": self.macropixel,
                "signal_elements": self.signal_elements, "reference_mirrors": self.reference_mirrors,
                "reference_region": [self.reference_region.start, self.reference_region.stop]}
