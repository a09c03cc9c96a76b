"""An aarch64 Debian userland run by qemu user-mode emulation, for `nox -s audit_aarch64`.

The session audits torch on aarch64 from an x86-64 machine: a Debian arm64 userland built
once with mmdebstrap and cached outside the repository, the registry's aarch64 wheels
fetched by the host's pip, and `python3 -m audit run` started in a chroot of it, where
every aarch64 binary runs under `qemu-aarch64-static` through the kernel's binfmt_misc.

This module holds what needs neither nox nor qemu, so that it is tested anywhere: why the
session cannot run here (one line), where the userland and its wheels live, the command
lines (apt, mmdebstrap, binfmt, pip, chroot) and the mounts a chroot needs (made through
audit.integrations.mounts: each undone however the session ends). noxfile.py drives it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from audit.integrations.mounts import Mounts, Run, mount_points, remove_tree

SUITE = "bookworm"  # Debian 12: Python 3.11, for which the registry has aarch64 wheels
DEBIAN_ARCH = "arm64"
USERLAND_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
MIRROR = os.environ.get("REPRO_AUDIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
QEMU = "qemu-aarch64-static"
BINFMT_ENTRY = "qemu-aarch64"
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# The host's commands the session needs, and the Debian package that brings each
# (mmdebstrap refuses a foreign architecture without arch-test, which it only recommends).
HOST_TOOLS = {QEMU: "qemu-user-static", "update-binfmts": "binfmt-support",
              "mmdebstrap": "mmdebstrap", "arch-test": "arch-test"}
APT_ENVIRON = {"DEBIAN_FRONTEND": "noninteractive"}
WHEEL_PLATFORMS = ("manylinux_2_17_aarch64", "manylinux_2_28_aarch64")
# Inside the chroot: where the wheels and the copy of this package lie.
CHROOT_HOME = "/opt/repro-audit"
CHROOT_REPO = f"{CHROOT_HOME}/repo"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WHEELS_DONE = ".repro-audit-requirements"  # in a site folder: what it holds, when complete


# --- can it run here --------------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    """What the checks look at, read once (a test builds one by hand)."""

    platform: str
    machine: str
    root: bool
    commands: frozenset[str]  # those of HOST_TOOLS and apt-get found on PATH
    binfmt_support: bool  # the kernel has binfmt_misc (mounted or mountable)

    @classmethod
    def here(cls) -> Host:
        import platform

        commands = frozenset(name for name in (*HOST_TOOLS, "apt-get") if shutil.which(name))
        return cls(platform=sys.platform, machine=platform.machine().lower(),
                   root=hasattr(os, "geteuid") and os.geteuid() == 0, commands=commands,
                   binfmt_support=BINFMT_DIR.is_dir() or _kernel_has("binfmt_misc"))


def _kernel_has(filesystem: str) -> bool:
    try:
        text = Path("/proc/filesystems").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return any(line.split()[-1:] == [filesystem] for line in text.splitlines())


def missing_packages(host: Host) -> tuple[str, ...]:
    """Debian packages to install for the host tools it lacks."""
    return tuple(dict.fromkeys(package for command, package in HOST_TOOLS.items()
                               if command not in host.commands))


def why_not_here(host: Host) -> str | None:
    """Why the emulated audit cannot run on `host`, in one line; None when it can."""
    if host.platform != "linux":
        return f"needs Linux (qemu user mode, binfmt_misc, chroot); this is {host.platform}"
    if host.machine in ("aarch64", "arm64"):
        return "this machine is aarch64 already: its own `nox -s audit` is a native result"
    if not host.root:
        return ("needs root (binfmt_misc, mounts, chroot): run it as root, "
                "e.g. `sudo nox -s audit_aarch64`")
    missing = missing_packages(host)
    if missing and "apt-get" not in host.commands:
        return (f"needs {', '.join(missing)} and there is no apt-get here to install "
                f"{'it' if len(missing) == 1 else 'them'}")
    if not host.binfmt_support:
        return "this kernel has no binfmt_misc, through which qemu runs aarch64 programs"
    return None


def apt_commands(packages: Sequence[str]) -> list[list[str]]:
    """Install `packages` (run with APT_ENVIRON)."""
    return [["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", *packages]]


# --- the cached userland ----------------------------------------------------------------

def cache_folder() -> Path:
    """The userland's folder: REPRO_AUDIT_AARCH64_CACHE, else under the user's cache."""
    chosen = os.environ.get("REPRO_AUDIT_AARCH64_CACHE")
    if chosen:
        return Path(chosen).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(cache) / "repro-audit" / f"aarch64-{SUITE}").resolve()


@dataclass(frozen=True)
class Userland:
    """A Debian arm64 root filesystem, built into `partial` and renamed to `root` once
    complete, so a build cut short is never taken for a userland."""

    root: Path

    @property
    def partial(self) -> Path:
        return self.root.with_name(self.root.name + ".partial")

    def ready(self) -> bool:
        return os.path.lexists(self.root / "usr" / "bin" / "python3")

    def build_command(self, mirror: str = MIRROR) -> list[str]:
        return ["mmdebstrap", f"--arch={DEBIAN_ARCH}", "--variant=minbase",
                f"--include={','.join(USERLAND_PACKAGES)}", SUITE, str(self.partial), mirror]

    def python_version(self) -> str:
        """The userland's Python, "3.11": the wheels must be built for it."""
        found = [match.group(1) for path in (self.root / "usr" / "bin").glob("python3.*")
                 if (match := re.fullmatch(r"python(3\.\d+)", path.name))]
        if not found:
            raise FileNotFoundError(f"no python3.X under {self.root / 'usr' / 'bin'}")
        return max(found, key=lambda version: int(version.split(".")[1]))

    def inside(self, chroot_path: str) -> Path:
        """The host's path of `chroot_path` (an absolute path in the chroot)."""
        return self.root / chroot_path.lstrip("/")

    @staticmethod
    def site(torch_label: str) -> str:
        """The chroot's folder of the wheels for one torch version."""
        return f"{CHROOT_HOME}/torch-{torch_label}"


def chroot_binds(userland: Userland, results: Path) -> list[tuple[str, Path]]:
    """(host source, host target) of each bind mount a run in the chroot needs: /proc,
    /sys (torch's cpuinfo reads it), /dev and its shared memory, and the results folder."""
    return [("/proc", userland.inside("/proc")), ("/sys", userland.inside("/sys")),
            ("/dev", userland.inside("/dev")), ("/dev/shm", userland.inside("/dev/shm")),
            (str(results.resolve()), userland.inside(f"{CHROOT_REPO}/results"))]


# --- binfmt_misc ------------------------------------------------------------------------

def binfmt_enabled(folder: Path = BINFMT_DIR) -> bool:
    """Whether the kernel runs aarch64 programs through qemu now."""
    try:
        return (folder / BINFMT_ENTRY).read_text(encoding="ascii").startswith("enabled")
    except OSError:
        return False


def binfmt_mounted(table: str, folder: Path = BINFMT_DIR) -> bool:
    return str(folder) in mount_points(table)


def enable_binfmt(mounts: Mounts, run: Run, folder: Path = BINFMT_DIR) -> bool:
    """Mount binfmt_misc where it is not (through `mounts`: unmounted after) and enable
    qemu's aarch64 entry; True when this enabled it (`disable_binfmt` after)."""
    if not binfmt_mounted(mounts.table(), folder):
        mounts.filesystem("binfmt_misc", folder)
    if binfmt_enabled(folder):
        return False
    run("update-binfmts", "--enable", BINFMT_ENTRY)
    return True


def disable_binfmt(run: Run) -> None:
    run("update-binfmts", "--disable", BINFMT_ENTRY)


# --- wheels -----------------------------------------------------------------------------

def target_environment(python_version: str) -> dict[str, str]:
    """Marker values of the userland's Python (pip on the host would use the host's)."""
    return {"python_version": python_version, "python_full_version": f"{python_version}.0",
            "platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux",
            "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "implementation_version": f"{python_version}.0", "platform_release": "",
            "platform_version": "", "extra": ""}


def requirements_for(requirements: Iterable[str], environment: dict[str, str]) -> list[str]:
    """The requirements whose markers hold in `environment`, without their markers
    (extras' requirements left out)."""
    from packaging.requirements import Requirement

    kept = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        requirement.marker = None
        kept.append(str(requirement))
    return kept


def wheel_requirements(metadata: str, environment: dict[str, str]) -> list[str]:
    """The Requires-Dist of a wheel's METADATA that apply in `environment`."""
    from email.parser import HeaderParser

    message = HeaderParser().parsestr(metadata)
    return requirements_for(message.get_all("Requires-Dist") or [], environment)


def installed_metadata(site: Path, distribution: str) -> str:
    """METADATA of `distribution` installed under `site` (a pip --target folder)."""
    name = re.sub(r"[-_.]+", "_", distribution).lower()
    for folder in site.glob("*.dist-info"):
        if folder.name.lower().startswith(f"{name}-"):
            return (folder / "METADATA").read_text(encoding="utf-8")
    raise FileNotFoundError(f"no {distribution} under {site}")


def pip_target_command(pip: Sequence[str], site: Path, python_version: str,
                       requirements: Sequence[str], no_deps: bool = False) -> list[str]:
    """pip on the host fetching aarch64 wheels for the userland's Python into `site`.

    `--no-deps` for torch: pip evaluates a wheel's dependency markers on the host, where
    `platform_machine == "x86_64"` pulls CUDA wheels; its aarch64 dependencies are then
    listed explicitly (wheel_requirements).
    """
    abi = "cp" + python_version.replace(".", "")
    platforms = [argument for platform in WHEEL_PLATFORMS for argument in ("--platform", platform)]
    return [*pip, "install", "--disable-pip-version-check", "--target", str(site), *platforms,
            "--python-version", python_version, "--implementation", "cp", "--abi", abi,
            "--only-binary=:all:", *(["--no-deps"] if no_deps else []), *requirements]


def install_wheels(userland: Userland, torch: str, others: Sequence[str], pip: Sequence[str],
                   run: Run, label: str) -> str:
    """The aarch64 wheels of `torch` (a requirement), its dependencies and `others` into
    the chroot's site folder for `label`, kept while it holds the same requirements;
    returns that folder's path in the chroot."""
    site_path = userland.site(label)
    site = userland.inside(site_path)
    version = userland.python_version()
    wanted = "\n".join([f"python {version}", torch, *others])
    done = site / WHEELS_DONE
    if done.is_file() and done.read_text(encoding="utf-8") == wanted:
        return site_path
    remove_tree(site)
    run(*pip_target_command(pip, site, version, [torch], no_deps=True))
    environment = target_environment(version)
    needs = wheel_requirements(installed_metadata(site, "torch"), environment)
    run(*pip_target_command(pip, site, version, [*needs, *requirements_for(others, environment)]))
    done.write_text(wanted, encoding="utf-8")
    return site_path


# --- the run ----------------------------------------------------------------------------

def copy_package(repo: Path, userland: Userland, matrix: Path) -> None:
    """This package and the matrix into the chroot, fresh: a copy (not a mount) lets the
    emulated Python write its bytecode once for all its workers."""
    destination = userland.inside(CHROOT_REPO)
    remove_tree(destination)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(repo / "audit", destination / "audit", ignore=skip)
    (destination / "matrices").mkdir()
    shutil.copy2(matrix, destination / "matrices" / matrix.name)
    (destination / "results").mkdir()


def chroot_command(userland: Userland, site: str, arguments: Sequence[str]) -> list[str]:
    """`python3 -m audit <arguments>` in the chroot, from the package's copy, with an
    environment of its own (none of the host's variables)."""
    return ["chroot", str(userland.root), "/usr/bin/env", "-i", "-C", CHROOT_REPO,
            f"PATH={CHROOT_PATH}", "HOME=/root", "LANG=C.UTF-8", f"PYTHONPATH={site}",
            "python3", "-m", "audit", *arguments]
