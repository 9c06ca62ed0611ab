"""The optical feedback study's grid of settings: its axes, the variants over the base, and the sweep grids.

:func:`study_variants` turns the axes into named variants (flat keys: ``TrainConfig`` fields and
``set.<device key>``); :func:`full_grids` is the study as two sweeps (``core`` first, then ``extra``) and
:func:`quick_grid` a few seconds' version for the tests. The groups of settings and why each exists are described
in :mod:`experiments.optical_feedback`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SEEDS = (0, 1, 2)
ENCODINGS: dict[str, dict[str, Any]] = {
    "ternary-0.05": {"encoding.kind": "ternary", "encoding.threshold": 0.05},
    "ternary-0.1": {"encoding.kind": "ternary", "encoding.threshold": 0.1},
    "ternary-0.25": {"encoding.kind": "ternary", "encoding.threshold": 0.25},
    "ternary-0.5": {"encoding.kind": "ternary", "encoding.threshold": 0.5},
    "sign": {"encoding.kind": "sign"},
    **{f"bitplane-{b}": {"encoding.kind": "bitplane", "encoding.bits": b} for b in (1, 2, 3, 4)},
}
BITS: tuple[int | str, ...] = (1, 2, 3, 4, 6, 8, 12, "unlimited")
BITS_ENCODINGS = ("ternary-0.25", "sign", "bitplane-3")
SHORT_BITS: tuple[int | str, ...] = (1, 2, 8, "unlimited")  # the bits of the other encodings and families
# photo-electrons/s per lit mirror per pixel; x 400 us x 8192 reference mirrors = mean e- per pixel of the reference
PHOTON_RATES = (0.1, 3.0, 1500.0)
READ_NOISE = (0.0, 10.0, 30.0)  # e- rms
RHOS = (0.99, 0.9)
ENCODING_AXIS = ("ternary-0.05", "ternary-0.25", "ternary-0.5", "sign", "bitplane-1", "bitplane-2", "bitplane-3",
                 "bitplane-4")
DRIFT_PERIOD = 1000  # frames
REFERENCE_MIRRORS, EXPOSURE_S = 8192, 400e-6  # lighton-aurora: reference region, longest exposure
SGD_LR = 0.05
DIVERGING_LR = 1e38  # plain SGD: the weights overflow float32 at step 2, the error is NaN


def _bits_label(bits: int | str) -> str:
    return "inf" if bits == "unlimited" else str(bits)


def study_variants(*, bits: Sequence[int | str] = BITS, short_bits: Sequence[int | str] = SHORT_BITS,
                   encodings: Sequence[str] = ENCODING_AXIS, bits_encodings: Sequence[str] = BITS_ENCODINGS,
                   rates: Sequence[float] = PHOTON_RATES, read_noise: Sequence[float] = READ_NOISE,
                   rhos: Sequence[float] = RHOS) -> dict[str, dict[str, Any]]:
    """Variant label -> settings over the base (flat keys: TrainConfig fields and ``set.<device key>``)."""
    variants: dict[str, dict[str, Any]] = {"digital": {"device": "digital"}}

    def add(label: str, settings: Mapping[str, Any]) -> None:
        flat = {k if k in ("device", "optimizer", "lr", "hidden", "bias") else f"set.{k}": v
                for k, v in settings.items()}
        if label in variants:
            raise ValueError(f"variant {label!r} defined twice")
        variants[label] = flat

    for index, encoding in enumerate(bits_encodings):
        for b in bits if index == 0 else short_bits:  # the first encoding gets every bit depth
            add(f"bits{_bits_label(b)}-{encoding}", {"camera.bits": b, **ENCODINGS[encoding]})
    for encoding in encodings:
        if f"bits8-{encoding}" not in variants:
            add(f"bits8-{encoding}", {"camera.bits": 8, **ENCODINGS[encoding]})
    for rate in rates:
        for noise in read_noise:
            add(f"light-rate{rate:g}-read{noise:g}", {"camera.bits": 12, "camera.photon_rate": rate,
                                                      "camera.read_noise": noise})
    for mode in ("holographic", "strong-reference", "intensity"):
        for evening in (False, True):
            if mode == "holographic" and not evening:
                continue  # the base
            add(f"readout-{mode}{'-evening' if evening else ''}", {"readout.mode": mode, "readout.evening": evening})
    for rho in rhos:
        for recalibrate in (0, DRIFT_PERIOD):
            add(f"drift{rho:g}-evening{'-recal' if recalibrate else ''}",
                {"drift.enabled": True, "drift.rho": rho, "drift.period": DRIFT_PERIOD, "readout.evening": True,
                 "readout.recalibrate": recalibrate})
    if rhos:
        rho = rhos[len(rhos) // 2]
        add(f"drift{rho:g}", {"drift.enabled": True, "drift.rho": rho, "drift.period": DRIFT_PERIOD})
    for family, extra in (("sgd", {"optimizer": "sgd-plain", "lr": SGD_LR}),
                          ("deep", {"hidden": [100, 100, 100, 100], "bias": False})):
        variants[f"{family}-digital"] = {"device": "digital", **extra}
        for b in short_bits:
            add(f"{family}-bits{_bits_label(b)}", {**extra, "camera.bits": b})
    add("bad-dark-offset-4bit", {"camera.bits": 4, "camera.dark_offset": 20.0})
    add("bad-diverging-lr", {"device": "digital", "optimizer": "sgd-plain", "lr": DIVERGING_LR})
    return variants


CORE_GROUPS = ("digital", "bits", "light")  # the headline: bits, encoding, photon budget x read noise


def _in_core(label: str) -> bool:
    return label == "digital" or label.startswith(("bits", "light-"))


def full_grids() -> dict[str, dict[str, Any]]:
    """The full study as two grid dicts, ``core`` (digital, camera bits, encodings, light) and ``extra`` (readout,
    drift, plain SGD, the deep MLP, bad input), run in that order so that the headline comes first."""
    base = {"dataset": "fashion-mnist", "hidden": [800, 800], "method": "dfa", "device": "opu-sim", "epochs": 2,
            "limit": 10000, "batch_size": 128, "lr": 1e-3, "optimizer": "adam", "alignment_every": 16}
    variants = study_variants()
    parts = {"core": {k: v for k, v in variants.items() if _in_core(k)},
             "extra": {k: v for k, v in variants.items() if not _in_core(k)}}
    return {part: {"description": f"optical feedback study ({part}): issue 8", "seeds": list(SEEDS),
                   "feedback_seeds": [0], "base": base, "variants": chosen} for part, chosen in parts.items()}


QUICK = ("digital", "bits1-ternary-0.25", "bitsinf-ternary-0.25", "bitsinf-bitplane-2", "light-rate0.1-read30",
         "light-rate1500-read30", "readout-intensity", "readout-intensity-evening", "drift0.9-evening-recal",
         "bad-dark-offset-4bit", "bad-diverging-lr")


def quick_grid() -> dict[str, Any]:
    """A few seconds' version for tests: a level or two of every group (:data:`QUICK`), a small net, 2 seeds."""
    base = {"dataset": "fashion-mnist", "hidden": [32, 32], "method": "dfa", "device": "opu-sim", "epochs": 1,
            "limit": 300, "batch_size": 100, "lr": 1e-3, "optimizer": "adam", "alignment_every": 1}
    every = study_variants(bits=(1, "unlimited"), short_bits=(1, "unlimited"), encodings=("ternary-0.25",),
                           bits_encodings=("ternary-0.25", "bitplane-2"), rates=(0.1, 1500.0), read_noise=(30.0,),
                           rhos=(0.9,))
    variants = {k: every[k] for k in QUICK}
    return {"quick": {"description": "optical feedback study, quick version", "seeds": [0, 1],
                      "feedback_seeds": [0], "base": base, "variants": variants}}
