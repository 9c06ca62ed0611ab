"""Noiseless speckle intensities of a batch of frames, computed once per distinct frame.

For augmented frames ``x = [signal | ρ]`` (``ρ`` the reference flag) the field at the camera is
``F = C x_signal + ρ f`` and the intensity ``|F|²``. Readouts repeat work: the 4-frame readout shows ``t⁺`` with
and without the reference, and the codes of a small error dimension repeat across the samples of a batch. On the
CPU this module therefore

1. finds the distinct frames; when at most 3/4 of the frames are distinct it computes one intensity row per
   distinct frame and the camera copies rows as it draws independent noise per frame (copying a row costs less
   than computing it);
2. when ``d`` is large, computes the signal field once per distinct signal pattern and adds the reference field
   where the flag is set (this halves the matrix product of the 4-frame readout, which then dominates).

On a GPU it computes every frame directly: finding distinct rows needs a host round trip, and the product is cheap
there. Results agree with the direct computation up to floating-point rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from optodfa.sim.workspace import Workspace

__all__ = ["DISTINCT_FRACTION", "frame_intensities"]

# Copying rows costs two passes over the readings (mean and noise level); computing each frame costs the product and
# three passes, so sharing rows pays when at most about 3/4 of the frames are distinct.
DISTINCT_FRACTION = 0.75
# Sharing signal fields between frames with and without the reference saves (k − u)·d multiply-adds per pixel
# pair and costs two copies of the fields: worth it from about 64 signal elements on.
SHARED_SIGNAL_MIN_WIDTH = 64


def frame_intensities(x: torch.Tensor, weights: torch.Tensor, scale: torch.Tensor,
                      workspace: Workspace) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled intensities ``scale · |F|²`` of the frames.

    Args:
        x: ``(k, d + 1)`` augmented binary frames (signal elements, then the reference flag), float.
        weights: ``(d + 1, 2M)`` real weights ``[Re Cᵀ | Im Cᵀ]`` with the reference field as the last row.
        scale: ``(k,)`` factor per frame (photo-electrons per unit intensity); frames that are equal share it.
        workspace: scratch buffers; the result lives there until the next call.

    Returns:
        ``(u, M)`` rows and the ``(k,)`` int64 row of each frame, or ``(k, M)`` and ``None`` (one row per frame).
    """
    k = x.shape[0]
    if x.device.type != "cpu":
        return _intensity(x * scale.sqrt()[:, None], weights, workspace), None
    binary = x.numpy() != 0
    _, first, inverse = np.unique(np.packbits(binary, axis=1), axis=0, return_index=True, return_inverse=True)
    if len(first) <= DISTINCT_FRACTION * k:
        targets, rows = torch.from_numpy(first), torch.from_numpy(inverse.reshape(-1))
    else:
        targets, rows = None, None
    chosen = x if targets is None else x.index_select(0, targets)
    chosen_scale = scale if targets is None else scale.index_select(0, targets)
    if x.shape[1] <= SHARED_SIGNAL_MIN_WIDTH:
        # A narrow product costs less than the copies that sharing signal fields needs; the exposure factor rides
        # along in the frames for free.
        return _intensity(chosen * chosen_scale.sqrt()[:, None], weights, workspace), rows
    chosen_binary = binary if targets is None else binary[first]
    _, pattern_first, pattern_inverse = np.unique(np.packbits(chosen_binary[:, :-1], axis=1), axis=0,
                                                  return_index=True, return_inverse=True)
    if len(pattern_first) < chosen.shape[0]:
        patterns = chosen.index_select(0, torch.from_numpy(pattern_first))[:, :-1]
        signal = torch.matmul(patterns, weights[:-1],
                              out=workspace.get("signal_fields", (len(pattern_first), weights.shape[1]),
                                                x.dtype, x.device))
        fields = torch.index_select(signal, 0, torch.from_numpy(pattern_inverse.reshape(-1)),
                                    out=workspace.get("fields", (chosen.shape[0], weights.shape[1]), x.dtype,
                                                      x.device))
        if chosen_binary[:, -1].any():
            fields.addr_(chosen[:, -1], weights[-1])
        intensity = _square(fields, workspace)
    else:
        intensity = _intensity(chosen, weights, workspace)
    return intensity.mul_(chosen_scale[:, None]), rows


def _intensity(x: torch.Tensor, weights: torch.Tensor, workspace: Workspace) -> torch.Tensor:
    fields = torch.matmul(x, weights, out=workspace.get("fields", (x.shape[0], weights.shape[1]), x.dtype,
                                                        x.device))
    return _square(fields, workspace)


def _square(fields: torch.Tensor, workspace: Workspace) -> torch.Tensor:
    m = fields.shape[1] // 2
    real, imag = fields[:, :m], fields[:, m:]
    out = workspace.get("intensity", (fields.shape[0], m), fields.dtype, fields.device)
    return torch.mul(real, real, out=out).addcmul_(imag, imag)
