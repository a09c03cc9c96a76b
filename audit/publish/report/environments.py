"""Where the results come from: environments, the machines' math library code paths, and
the settings some files do not record."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from audit.environment.collect import built_libraries, cpu_label, platform_label, ruled_out
from audit.judge.axes import CAPABILITY, value_label
from audit.judge.compare import Comparison
from audit.publish.markdown import escape, short_list, table
from audit.store.results import ResultsFile


def environments_section(files: list[ResultsFile]) -> list[str]:
    seen: dict[str, list[Any]] = {}
    for item in files:
        environment = item.header.get("environment", {})
        identity = item.header.get("env_id", "?")
        devices = ["cpu"] + sorted((environment.get("devices") or {}).keys())
        seen[identity] = [
            escape(identity), escape(environment.get("torch", "?")),
            escape(environment.get("numpy", "?")), escape(environment.get("python", "?")),
            escape(environment.get("os", "?")), escape(cpu_label(environment)),
            escape(value_label(CAPABILITY, str(environment.get("cpu_capability", "?")).lower())),
            escape(", ".join(devices)),
        ]
    rows = [seen[key] for key in sorted(seen, key=lambda k: (seen[k][1], k))]
    return ["## Environments", "",
            table(["env-id", "torch", "numpy", "python", "OS", "CPU", "CPU capability",
                   "devices"], rows), ""]


def machines_section(files: list[ResultsFile]) -> list[str]:
    """What explains why machines compute differently: the CPU, and the code paths the math
    libraries under torch take on it, per machine (the report's machine axis value)."""
    machines: dict[str, dict[str, set[str]]] = {}
    for item in files:
        environment = item.header.get("environment") or {}
        if not environment:
            continue
        facts = machines.setdefault(platform_label(environment), defaultdict(set))
        for column, value in machine_facts(environment).items():
            if value:
                facts[column].add(value)
    if not machines:
        return []
    columns = ["CPU vendor, family / model / stepping", "CPU flags", "BLAS / LAPACK", "MKL",
               "MKL code path", "oneDNN", "oneDNN ISA"]
    rows = [[escape(label)] + [escape("; ".join(sorted(facts[column]))) or "not recorded"
                               for column in columns]
            for label, facts in sorted(machines.items())]
    return ["## Machines", "",
            "The machine axis tells machines apart by CPU. What usually explains a difference "
            "between two of them is below: the code paths MKL (matmul, linear algebra) and "
            "oneDNN (convolutions) choose for each CPU, as they report them.", "",
            table(["machine", *columns], rows), ""]


def machine_facts(environment: dict[str, Any]) -> dict[str, str | None]:
    cpu = environment.get("cpu") if isinstance(environment.get("cpu"), dict) else {}
    mkl = environment.get("mkl") if isinstance(environment.get("mkl"), dict) else {}
    onednn = environment.get("onednn") if isinstance(environment.get("onednn"), dict) else {}
    numbers = [str(cpu[key]) for key in ("family", "model_number", "stepping")
               if cpu.get(key) is not None]
    identity = " ".join(part for part in (cpu.get("vendor"), " / ".join(numbers)) if part)
    says = cpu.get("model_number_says")
    if says:
        flags = ", ".join(ruled_out(str(says), cpu.get("flags") or []))
        identity += (f" (model {cpu.get('model_number')} is {says}'s, which has no {flags}: "
                     "a virtual CPU showing another model number)")
    built = built_libraries(str(environment.get("torch_config") or ""))
    libraries = " / ".join(str(environment.get(key) or built[key]) for key in ("blas", "lapack")
                           if environment.get(key) or built[key])
    isa = onednn.get("isa")
    if isa and onednn.get("isa_capped_by"):
        isa += f" (capped by ONEDNN_MAX_CPU_ISA={onednn['isa_capped_by']})"
    return {
        "CPU vendor, family / model / stepping": identity or None,
        "CPU flags": " ".join(cpu.get("flags") or []) or None,
        "BLAS / LAPACK": libraries or None,
        "MKL": mkl.get("version") or mkl.get("built_with") or (
            f"{built['mkl_built_with']} (built with)" if built["mkl_built_with"] else None),
        "MKL code path": mkl.get("code_path"),
        "oneDNN": (onednn.get("version") or "").split(" (commit")[0] or (
            f"{built['onednn_built_with']} (built with)" if built["onednn_built_with"] else None),
        "oneDNN ISA": isa,
    }


def assumed_section(result: Comparison) -> list[str]:
    """One note for the settings some files do not record (written before every setting
    was recorded, or by a matrix that never set them): read at their unset value."""
    if not result.assumed:
        return []
    files = sorted({Path(name).name for names in result.assumed.values() for name in names})
    values = ", ".join(f"{escape(name)}={escape(value)}"
                       for name, value in sorted(result.assumed))
    subject = ("One results file does not" if len(files) == 1
               else f"{len(files)} results files do not")
    return [f"{subject} record every setting ({short_list(files, 3)}): a setting a file "
            f"does not record is read at the value torch has when nobody sets it: {values}.",
            ""]
