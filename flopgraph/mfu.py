"""Model and hardware FLOPs utilization (MFU, HFU) of a measured training step.

MFU = model FLOPs of the step / (step time x peak FLOP/s); HFU counts the hardware
FLOPs (activation checkpointing's recompute included) instead. The FLOPs are the
report's own exact counts (``Report.model_flops`` and ``hardware_flops``), so MFU
here counts every op the step runs (attention, norms, the optimizer), not 6N.

Peak FLOP/s are dense (no structured sparsity) tensor-core figures from the vendors'
datasheets, per device, in FLOP/s; pass ``peak=`` for a device or dtype not listed,
or for a clock your device does not sustain.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError
from .report import Report

T = 10**12

PEAK_FLOPS: dict[str, dict[str, int]] = {
    # NVIDIA A100 Tensor Core GPU datasheet (SXM): FP32 19.5, TF32 156, BF16/FP16 312 TF
    "A100": {"float32": 19_500 * 10**9, "tf32": 156 * T, "bfloat16": 312 * T,
             "float16": 312 * T, "int8": 624 * T},
    # NVIDIA H100 Tensor Core GPU datasheet (SXM): FP32 67, TF32 494.7, BF16/FP16 989.4,
    # FP8 1,978.9 TF (the datasheet's sparse figures halved)
    "H100": {"float32": 67 * T, "tf32": 494_700 * 10**9, "bfloat16": 989_400 * 10**9,
             "float16": 989_400 * 10**9, "float8": 1_978_900 * 10**9,
             "int8": 1_978_900 * 10**9},
    # NVIDIA H100 PCIe: FP32 51, TF32 378, BF16/FP16 756, FP8 1,513 TF
    "H100-PCIe": {"float32": 51 * T, "tf32": 378 * T, "bfloat16": 756 * T,
                  "float16": 756 * T, "float8": 1_513 * T},
    # NVIDIA H200 Tensor Core GPU datasheet (SXM): the H100's compute, more memory
    "H200": {"float32": 67 * T, "tf32": 494_700 * 10**9, "bfloat16": 989_400 * 10**9,
             "float16": 989_400 * 10**9, "float8": 1_978_900 * 10**9},
    # NVIDIA HGX B200 (per GPU): TF32 1.1, BF16/FP16 2.25, FP8 4.5, FP4 9 PF dense
    "B200": {"tf32": 1_100 * T, "bfloat16": 2_250 * T, "float16": 2_250 * T,
             "float8": 4_500 * T, "float4": 9_000 * T},
    # NVIDIA L4 datasheet: FP32 30.3, TF32 60, BF16/FP16 121, FP8 242.5 TF dense
    "L4": {"float32": 30_300 * 10**9, "tf32": 60 * T, "bfloat16": 121 * T,
           "float16": 121 * T, "float8": 242_500 * 10**9},
    # NVIDIA T4 datasheet: FP32 8.1, FP16 mixed precision 65 TF, INT8 130 TOPS
    "T4": {"float32": 8_100 * 10**9, "float16": 65 * T, "int8": 130 * T},
    # AMD Instinct MI300X datasheet: FP32 163.4, TF32 653.7, BF16/FP16 1,307.4,
    # FP8 2,614.9 TF dense
    "MI300X": {"float32": 163_400 * 10**9, "tf32": 653_700 * 10**9,
               "bfloat16": 1_307_400 * 10**9, "float16": 1_307_400 * 10**9,
               "float8": 2_614_900 * 10**9},
}  # fmt: skip
"""Accelerator -> dtype -> dense peak FLOP/s of one device."""


@dataclass(frozen=True)
class Utilization:
    """What a measured step achieved against a peak."""

    seconds: float
    peak_flops_per_s: float
    """The peak of all the devices together."""
    model_flops_per_s: float
    hardware_flops_per_s: float
    mfu: float
    """Model FLOPs utilization: model FLOPs / (seconds x peak), in [0, 1] on sane input."""
    hfu: float
    """Hardware FLOPs utilization: recompute included."""

    def __str__(self) -> str:
        return (
            f"MFU {self.mfu:.1%}, HFU {self.hfu:.1%} "
            f"({self.model_flops_per_s / T:,.1f} TFLOP/s of {self.peak_flops_per_s / T:,.1f})"
        )


def peak_flops(accelerator: str, dtype: str = "bfloat16") -> int:
    """The table's dense peak FLOP/s of one ``accelerator`` in ``dtype``."""
    table = {k.lower(): v for k, v in PEAK_FLOPS.items()}
    by_dtype = table.get(accelerator.lower())
    if by_dtype is None:
        raise InputError(
            f"unknown accelerator {accelerator!r}; known: {', '.join(PEAK_FLOPS)} "
            "(or pass peak= in FLOP/s)"
        )
    name = dtype.removeprefix("torch.")
    if name not in by_dtype:
        raise InputError(
            f"no {name} peak for {accelerator}; known: {', '.join(by_dtype)} (or pass peak=)"
        )
    return by_dtype[name]


def utilization(
    report: Report,
    seconds: float,
    accelerator: str | None = None,
    *,
    dtype: str = "bfloat16",
    peak: float | None = None,
    devices: int = 1,
) -> Utilization:
    """MFU and HFU of ``report``'s step measured at ``seconds`` per step on ``devices``
    devices of one kind: ``accelerator`` from :data:`PEAK_FLOPS`, or ``peak`` FLOP/s
    of one device."""
    return flops_utilization(
        report.model_flops, report.hardware_flops, seconds, accelerator,
        dtype=dtype, peak=peak, devices=devices,
    )  # fmt: skip


def flops_utilization(
    model_flops: int,
    hardware_flops: int,
    seconds: float,
    accelerator: str | None = None,
    *,
    dtype: str = "bfloat16",
    peak: float | None = None,
    devices: int = 1,
) -> Utilization:
    """:func:`utilization` of FLOPs counted elsewhere (several analyses summed: the
    micro-batches of one optimizer step)."""
    if seconds <= 0 or devices < 1:
        raise InputError(f"seconds must be > 0 and devices >= 1, got {seconds}, {devices}")
    if peak is None:
        if accelerator is None:
            raise InputError("pass accelerator= (see flopgraph.mfu.PEAK_FLOPS) or peak=")
        peak = peak_flops(accelerator, dtype)
    total = float(peak) * devices
    model, hardware = model_flops / seconds, hardware_flops / seconds
    return Utilization(seconds, total, model, hardware, model / total, hardware / total)
