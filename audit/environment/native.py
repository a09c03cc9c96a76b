"""What the native libraries under torch (MKL, oneDNN) say about themselves in this process.

Neither library exports a query torch could call (`mkl_cbwr_get` and
`dnnl_get_effective_cpu_isa` are not in libtorch's dynamic symbols), but both print their
version, the code path they dispatch to and, for MKL, the reproducibility mode (CNR) in
effect when verbose mode is on. So each probe runs one tiny call with verbose on and reads
what the library wrote to the C-level stdout. oneDNN prints its header only once per
process, so every probe runs at most once (cached) and should run before any scenario.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

# oneDNN's description of the ISA it dispatches to -> the ONEDNN_MAX_CPU_ISA value naming it.
ONEDNN_ISA_NAMES = {
    "Intel SSE4.1": "sse41",
    "Intel AVX": "avx",
    "Intel AVX2": "avx2",
    "Intel AVX2 with Intel DL Boost": "avx2_vnni",
    "Intel AVX2 with Intel DL Boost, float16 and bfloat16 support": "avx2_vnni_2",
    "Intel AVX-512": "avx512_core",
    "Intel AVX-512 with Intel DL Boost": "avx512_core_vnni",
    "Intel AVX-512 with Intel DL Boost and bfloat16 support": "avx512_core_bf16",
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support": "avx512_core_fp16",
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with "
    "bfloat16 and 8-bit integer support": "avx512_core_amx",
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with "
    "float16, bfloat16 and 8-bit integer support": "avx512_core_amx_fp16",
}


@dataclass(frozen=True)
class MklReport:
    """MKL's verbose header and the CNR mode of one call."""

    version: str | None  # "oneMKL 2024.0 Update 2 Product build 20240605"
    code_path: str | None  # "Intel(R) Architecture processors" (generic) or an ISA
    cnr: str | None  # "OFF", "AUTO", "COMPATIBLE", "AVX2,STRICT", ...


@dataclass(frozen=True)
class OnednnReport:
    version: str | None  # "oneDNN v3.12.0 (commit ...)"
    isa: str | None  # "Intel AVX-512 with Intel DL Boost and bfloat16 support"


def capture_stdout(action: Callable[[], None]) -> str:
    """What native code (and Python) wrote to file descriptor 1 while `action` ran."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        try:
            action()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        captured.seek(0)
        return captured.read().decode("utf-8", "replace")


def parse_mkl(text: str) -> MklReport:
    """MKL_VERBOSE lines -> version, code path and CNR mode.

    The header reads "MKL_VERBOSE oneMKL 2024.0 ... Product build 20240605 for Intel(R) 64
    architecture <code path>, Lnx 2.60GHz lp64 gnu_thread"; each call line ends with
    "CNR:<mode>".
    """
    version = code_path = None
    for line in text.splitlines():
        body = line[len("MKL_VERBOSE "):] if line.startswith("MKL_VERBOSE ") else ""
        product, found, rest = body.partition(" for ")
        if found and "MKL" in product and version is None:
            version = product.strip()
            rest = re.split(r", (?:Lnx|Win|Mac|OSX)\b", rest)[0]
            code_path = rest.replace("Intel(R) 64 architecture", "").strip() or None
    mode = re.search(r"CNR:(\S+)", text)
    return MklReport(version, code_path, mode.group(1) if mode else None)


def parse_onednn(text: str) -> OnednnReport:
    """onednn_verbose (or dnnl_verbose / mkldnn_verbose) info lines -> version and ISA."""
    version = isa = None
    for line in text.splitlines():
        fields = line.split(",")
        if "info" not in fields:
            continue
        last = fields[-1].strip()
        if last.startswith(("oneDNN v", "DNNL v", "Intel MKL-DNN v")):
            version = last
        elif fields[-1].startswith("isa:") or "isa:" in line:
            isa = line.split("isa:", 1)[1].strip()
    return OnednnReport(version, isa)


def mkl_backend() -> Any:
    """torch.backends.mkl where MKL is there and can report itself (verbose mode), else
    None: checked without the probe, which costs MKL's clock measurement."""
    import torch

    backend = getattr(torch.backends, "mkl", None)
    if backend is None or not backend.is_available() or not hasattr(backend, "verbose"):
        return None
    return backend


@functools.cache
def mkl_report() -> MklReport | None:
    """MKL's own account of itself, from one small SGEMM; None without MKL."""
    import torch

    backend = mkl_backend()
    if backend is None:
        return None
    left = torch.ones(64, 64)

    def multiply() -> None:
        with backend.verbose(backend.VERBOSE_ON):
            torch.mm(left, left)

    try:
        return parse_mkl(capture_stdout(multiply))
    except Exception:  # noqa: BLE001 - a probe that fails says nothing (verbose asserts)
        return None


@functools.cache
def onednn_report() -> OnednnReport | None:
    """oneDNN's version and ISA, from one small oneDNN convolution; None without oneDNN."""
    import torch

    backend = getattr(torch.backends, "mkldnn", None)
    convolve = getattr(torch, "mkldnn_convolution", None)
    if (backend is None or not backend.is_available() or not hasattr(backend, "verbose")
            or convolve is None):
        return None
    image, weight = torch.ones(1, 3, 8, 8), torch.ones(4, 3, 3, 3)

    def convolution() -> None:
        with backend.verbose(backend.VERBOSE_ON):
            convolve(image, weight, None, (0, 0), (1, 1), (1, 1), 1)

    try:
        return parse_onednn(capture_stdout(convolution))
    except Exception:  # noqa: BLE001 - a probe that fails says nothing
        return None


def onednn_isa_name(description: str | None) -> str | None:
    """'Intel AVX2' -> 'avx2'; a description this table lacks is kept as oneDNN wrote it."""
    if description is None:
        return None
    return ONEDNN_ISA_NAMES.get(description, description)
