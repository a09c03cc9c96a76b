"""How fast `audit.capture.hashing.digest` is against a plain read of the same bytes.

For float32 tensors of 1 KiB to 256 MiB, measured side by side (interleaved, median of N):
`digest`, raw blake3 over the same bytes (the hash alone, same threading rule as `digest`),
`audit.capture.sample.take_sample`, and candidate read passes that touch every byte once. The
fastest read pass at each size is the baseline for the ratio, and is named. Targets:
digest >= 0.75x the read pass from 4 MiB up, and <= 10 us per digest of a 3x3 tensor.

    python benchmarks/digest_throughput.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import blake3
import numpy as np
import torch
from _common import (
    MiB,
    calibrate,
    emit_json,
    gbps,
    interleaved,
    median,
    per_call,
    size_label,
    target_line,
)

from audit.capture.hashing import THREADED_FROM_BYTES, digest, digest_parts, tensor_parts
from audit.capture.sample import sample_positions, take_sample

SIZES = [1024, 1 * MiB, 4 * MiB, 64 * MiB, 256 * MiB]
QUICK_SIZES = [1024, 1 * MiB, 4 * MiB, 64 * MiB]
RATIO_TARGET = 0.75
RATIO_FROM = 4 * MiB
SMALL_TARGET_US = 10.0


def read_passes(tensor: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Ways to read every byte of the tensor once, cheapest work per byte."""
    flat = tensor.reshape(-1)
    words = flat.view(torch.uint8).numpy().view(np.uint64)
    as_int64 = flat.view(torch.int64)
    return {
        "numpy uint64 add.reduce (1 thread)": lambda: np.add.reduce(words),
        "torch int64 sum (all threads)": lambda: as_int64.sum(),
    }


def raw_blake3(tensor: torch.Tensor) -> Callable[[], str]:
    """blake3 over the bytes alone, with the thread rule `digest` uses."""
    data = tensor.reshape(-1).view(torch.uint8).numpy()
    threads = blake3.blake3.AUTO if data.nbytes >= THREADED_FROM_BYTES else 1

    def run() -> str:
        return blake3.blake3(data, max_threads=threads).hexdigest()

    return run


def measure_size(nbytes: int, repeats: int) -> dict[str, Any]:
    """Median seconds per call of every variant on one float32 tensor of `nbytes`."""
    tensor = torch.rand(nbytes // 4, dtype=torch.float32)
    functions: dict[str, Callable[[], Any]] = {
        "digest": lambda: digest(tensor),
        "blake3 raw": raw_blake3(tensor),
        "take_sample": lambda: take_sample(tensor),
        "part of take_sample: sample_positions": lambda: sample_positions(tensor.numel()),
        **{f"read: {name}": run for name, run in read_passes(tensor).items()},
    }
    loops = {name: calibrate(function) for name, function in functions.items()}
    variants = {name: (lambda f=function, n=loops[name]: per_call(f, n))
                for name, function in functions.items()}
    samples = interleaved(variants, repeats)
    seconds = {name: median(values) for name, values in samples.items()}
    reads = {name: value for name, value in seconds.items() if name.startswith("read: ")}
    baseline = min(reads, key=reads.__getitem__)
    return {
        "bytes": nbytes,
        "seconds": seconds,
        "gbps": {name: gbps(nbytes, value) for name, value in seconds.items()},
        "read_pass": baseline[len("read: "):],
        "ratio_digest_to_read": reads[baseline] / seconds["digest"],
        "ratio_blake3_to_read": reads[baseline] / seconds["blake3 raw"],
    }


def small_tensor(repeats: int) -> dict[str, float]:
    """Microseconds per call on a 3x3 float32 tensor (per-call overhead dominates)."""
    tensor = torch.rand(3, 3)
    kind, parts = tensor_parts(tensor)
    functions: dict[str, Callable[[], Any]] = {
        "digest": lambda: digest(tensor),
        "take_sample": lambda: take_sample(tensor),
        "blake3 raw": raw_blake3(tensor),
        # where digest's time goes: the byte view, then headers + hash
        "part of digest: tensor_parts": lambda: tensor_parts(tensor),
        "part of digest: digest_parts": lambda: digest_parts(kind, "float32", (3, 3), parts),
    }
    loops = {name: calibrate(function, 0.05) for name, function in functions.items()}
    variants = {name: (lambda f=function, n=loops[name]: per_call(f, n))
                for name, function in functions.items()}
    samples = interleaved(variants, repeats)
    return {name: median(values) * 1e6 for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 64 MiB, 3 repeats")
    parser.add_argument("--repeats", type=int, help="repetitions per variant (median taken)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    sizes = QUICK_SIZES if args.quick else SIZES
    print(f"digest throughput: float32 tensors, median of {repeats} interleaved repetitions, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")

    results = []
    for nbytes in sizes:
        result = measure_size(nbytes, repeats)
        results.append(result)
        rate = result["gbps"]
        positions = result["seconds"]["part of take_sample: sample_positions"]
        print(f"{size_label(nbytes):>8}: digest {rate['digest']:6.2f} GB/s | "
              f"blake3 raw {rate['blake3 raw']:6.2f} | "
              f"take_sample {result['seconds']['take_sample'] * 1e6:7.1f} us "
              f"(sample_positions {positions * 1e6:6.1f} us) | reads: "
              + ", ".join(f"{name[6:]} {value:6.2f} GB/s" for name, value in rate.items()
                          if name.startswith("read: ")))
        print(f"          digest / read pass ({result['read_pass']}) = "
              f"{result['ratio_digest_to_read']:.2f}x")

    small = small_tensor(max(repeats, 5))
    print(f"3x3 float32: digest {small['digest']:.2f} us/call, take_sample "
          f"{small['take_sample']:.2f} us/call, blake3 raw {small['blake3 raw']:.2f} us/call")
    print(f"  digest = tensor_parts {small['part of digest: tensor_parts']:.2f} us + "
          f"digest_parts (headers + hash) {small['part of digest: digest_parts']:.2f} us")

    print("targets:")
    ratio_checks = {}
    for result in results:
        if result["bytes"] >= RATIO_FROM:
            ok = result["ratio_digest_to_read"] >= RATIO_TARGET
            ratio_checks[str(result["bytes"])] = ok
            print(target_line(f"digest / read pass at {size_label(result['bytes'])}",
                              f"{result['ratio_digest_to_read']:.2f}x",
                              f">= {RATIO_TARGET}x", ok))
    small_ok = small["digest"] <= SMALL_TARGET_US
    print(target_line("digest of a 3x3 tensor", f"{small['digest']:.2f} us",
                      f"<= {SMALL_TARGET_US:g} us", small_ok))
    emit_json("digest_throughput", {
        "repeats": repeats,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sizes": results,
        "small_3x3_us": small,
        "targets": {"ratio_ge_0.75_from_4MiB": ratio_checks,
                    "small_le_10us": small_ok},
    })


if __name__ == "__main__":
    main()
