"""audit.integrations.qemu_userland: what the emulated aarch64 audit decides and runs, without
qemu, root or a network (nox -s audit_aarch64 runs the real thing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.integrations import qemu_userland as qemu
from audit.integrations.mounts import MountError, Mounts

EVERY_TOOL = frozenset({"qemu-aarch64-static", "update-binfmts", "mmdebstrap", "arch-test",
                        "apt-get"})


def host(**changes: object) -> qemu.Host:
    values: dict[str, object] = {"platform": "linux", "machine": "x86_64", "root": True,
                                 "commands": EVERY_TOOL, "binfmt_support": True}
    values.update(changes)
    return qemu.Host(**values)  # type: ignore[arg-type]


def test_a_root_linux_host_with_the_tools_and_binfmt_can_run_it() -> None:
    assert qemu.why_not_here(host()) is None
    assert qemu.missing_packages(host()) == ()


@pytest.mark.parametrize(("changes", "reason"), [
    ({"root": False}, "needs root (binfmt_misc, mounts, chroot): run it as root, "
                      "e.g. `sudo nox -s audit_aarch64`"),
    ({"commands": frozenset({"update-binfmts", "mmdebstrap", "arch-test"})},
     "needs qemu-user-static and there is no apt-get here to install it"),
    ({"commands": frozenset()},
     "needs qemu-user-static, binfmt-support, mmdebstrap, arch-test and there is no apt-get "
     "here to install them"),
    ({"binfmt_support": False},
     "this kernel has no binfmt_misc, through which qemu runs aarch64 programs"),
    ({"platform": "darwin", "root": False},
     "needs Linux (qemu user mode, binfmt_misc, chroot); this is darwin"),
    ({"machine": "aarch64"},
     "this machine is aarch64 already: its own `nox -s audit` is a native result"),
])
def test_why_it_cannot_run_is_one_line(changes: dict[str, object], reason: str) -> None:
    said = qemu.why_not_here(host(**changes))
    assert said == reason
    assert "\n" not in said


def test_missing_tools_are_installed_with_apt_where_there_is_apt() -> None:
    lacking = host(commands=frozenset({"apt-get", "update-binfmts", "arch-test"}))
    assert qemu.why_not_here(lacking) is None
    assert qemu.missing_packages(lacking) == ("qemu-user-static", "mmdebstrap")
    assert qemu.apt_commands(["qemu-user-static", "mmdebstrap"]) == [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "qemu-user-static", "mmdebstrap"]]


def test_the_cache_lies_outside_the_repository(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.delenv("REPRO_AUDIT_AARCH64_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert qemu.cache_folder() == tmp_path.resolve() / "repro-audit" / "aarch64-bookworm"
    monkeypatch.setenv("REPRO_AUDIT_AARCH64_CACHE", str(tmp_path / "elsewhere"))
    assert qemu.cache_folder() == tmp_path.resolve() / "elsewhere"


def test_a_userland_is_built_beside_its_folder_then_renamed(tmp_path: Path) -> None:
    userland = qemu.Userland(tmp_path / "aarch64-bookworm")
    assert userland.partial == tmp_path / "aarch64-bookworm.partial"
    assert userland.build_command("http://mirror/debian") == [
        "mmdebstrap", "--arch=arm64", "--variant=minbase",
        "--include=python3,python3-venv,python3-pip,ca-certificates", "bookworm",
        str(tmp_path / "aarch64-bookworm.partial"), "http://mirror/debian"]
    assert not userland.ready()
    bin_folder = userland.root / "usr" / "bin"
    bin_folder.mkdir(parents=True)
    for name in ("python3", "python3.9", "python3.11", "python3.11-config"):
        (bin_folder / name).touch()
    assert userland.ready()
    assert userland.python_version() == "3.11"
    assert userland.inside("/opt/repro-audit/repo") == userland.root / "opt/repro-audit/repo"


def test_the_wheel_command_asks_for_aarch64_wheels_of_the_userland_python() -> None:
    command = qemu.pip_target_command(["python", "-m", "pip"], Path("/u/opt/site"), "3.11",
                                      ["torch==2.9.1"], no_deps=True)
    assert command == [
        "python", "-m", "pip", "install", "--disable-pip-version-check",
        "--target", "/u/opt/site",
        "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux_2_28_aarch64",
        "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
        "--only-binary=:all:", "--no-deps", "torch==2.9.1"]
    with_deps = qemu.pip_target_command(["pip"], Path("/s"), "3.12", ["numpy", "blake3"])
    assert "--no-deps" not in with_deps
    assert with_deps[-2:] == ["numpy", "blake3"]
    assert with_deps[with_deps.index("--abi") + 1] == "cp312"


TORCH_METADATA = """\
Metadata-Version: 2.4
Name: torch
Version: 2.9.1
Requires-Dist: filelock
Requires-Dist: typing-extensions>=4.10.0
Requires-Dist: setuptools; python_version >= "3.12"
Requires-Dist: sympy>=1.13.3
Requires-Dist: networkx>=2.5.1
Requires-Dist: jinja2
Requires-Dist: fsspec>=0.8.5
Requires-Dist: nvidia-nccl-cu12; platform_system == "Linux" and platform_machine == "x86_64"
Requires-Dist: triton==3.5.1; platform_system == "Linux" and platform_machine == "x86_64"
Requires-Dist: opt-einsum>=3.3; extra == "opt-einsum"

torch's description
"""


def test_torch_dependencies_are_those_of_aarch64_not_of_the_host() -> None:
    environment = qemu.target_environment("3.11")
    assert qemu.wheel_requirements(TORCH_METADATA, environment) == [
        "filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1", "jinja2",
        "fsspec>=0.8.5"]
    assert "setuptools" in qemu.wheel_requirements(TORCH_METADATA,
                                                   qemu.target_environment("3.12"))
    assert qemu.requirements_for(["numpy", "tomli>=1.1; python_version < '3.11'"],
                                 environment) == ["numpy"]


def test_installed_metadata_is_found_by_distribution_name(tmp_path: Path) -> None:
    info = tmp_path / "typing_extensions-4.16.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Name: typing_extensions\n", encoding="utf-8")
    assert qemu.installed_metadata(tmp_path, "typing-extensions") == "Name: typing_extensions\n"
    with pytest.raises(FileNotFoundError, match="no torch under"):
        qemu.installed_metadata(tmp_path, "torch")


def userland_with_python(tmp_path: Path) -> qemu.Userland:
    userland = qemu.Userland(tmp_path / "root")
    (userland.root / "usr" / "bin").mkdir(parents=True)
    (userland.root / "usr" / "bin" / "python3.11").touch()
    return userland


def test_wheels_are_fetched_once_per_set_of_requirements(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu, "remove_tree", lambda path: qemu.shutil.rmtree(path, True))
    userland = userland_with_python(tmp_path)
    commands: list[list[str]] = []

    def pip(*command: str) -> None:
        commands.append(list(command))
        site = Path(command[command.index("--target") + 1])
        if "--no-deps" in command:
            (site / "torch-2.9.1.dist-info").mkdir(parents=True)
            (site / "torch-2.9.1.dist-info" / "METADATA").write_text(TORCH_METADATA,
                                                                      encoding="utf-8")

    arguments = (userland, "torch==2.9.1", ["numpy", "tomli; python_version < '3.11'"],
                 ["pip"], pip, "2.9.1")
    site = qemu.install_wheels(*arguments)
    assert site == "/opt/repro-audit/torch-2.9.1"
    assert commands[0][-2:] == ["--no-deps", "torch==2.9.1"]
    assert commands[1][commands[1].index("--only-binary=:all:") + 1:] == [
        "filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1", "jinja2",
        "fsspec>=0.8.5", "numpy"]
    assert qemu.install_wheels(*arguments) == site
    assert len(commands) == 2  # kept: the same requirements
    qemu.install_wheels(userland, "torch==2.9.1", ["numpy<2"], ["pip"], pip, "2.9.1")
    assert len(commands) == 4  # other requirements: fetched again


def test_the_package_is_copied_fresh_and_the_chroot_runs_it_with_no_host_variable(
        tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "audit" / "__pycache__").mkdir(parents=True)
    (repo / "audit" / "__init__.py").write_text("", encoding="utf-8")
    (repo / "audit" / "__pycache__" / "stale.pyc").write_bytes(b"")
    (repo / "matrices").mkdir()
    matrix = repo / "matrices" / "aarch64.toml"
    matrix.write_text("[audit]\n", encoding="utf-8")
    userland = qemu.Userland(tmp_path / "root")
    old = userland.inside(qemu.CHROOT_REPO) / "audit" / "gone.py"
    old.parent.mkdir(parents=True)
    old.touch()
    qemu.copy_package(repo, userland, matrix)
    copy = userland.inside(qemu.CHROOT_REPO)
    assert sorted(str(path.relative_to(copy)) for path in copy.rglob("*")) == [
        "audit", "audit/__init__.py", "matrices", "matrices/aarch64.toml", "results"]
    assert qemu.chroot_command(userland, "/opt/repro-audit/torch-2.9.1", ["run", "--out", "r"]) == [
        "chroot", str(userland.root), "/usr/bin/env", "-i", "-C", "/opt/repro-audit/repo",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
        "LANG=C.UTF-8", "PYTHONPATH=/opt/repro-audit/torch-2.9.1",
        "python3", "-m", "audit", "run", "--out", "r"]


def test_the_copy_is_not_replaced_while_the_results_are_mounted_in_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    userland = qemu.Userland(tmp_path / "root")
    results = userland.inside(qemu.CHROOT_REPO) / "results"
    results.mkdir(parents=True)
    (results / "torch-2.9.1.jsonl").write_text("{}", encoding="utf-8")
    table = f"/dev/vda {results} ext4 rw 0 0\n"
    monkeypatch.setattr("audit.integrations.mounts.read_mount_table", lambda: table)
    with pytest.raises(MountError, match="refusing to delete"):
        qemu.copy_package(tmp_path, userland, tmp_path / "m.toml")
    assert (results / "torch-2.9.1.jsonl").exists()


def test_the_chroot_gets_proc_sys_dev_and_the_results(tmp_path: Path) -> None:
    userland = qemu.Userland(tmp_path / "root")
    binds = qemu.chroot_binds(userland, tmp_path / "results")
    assert binds == [
        ("/proc", userland.root / "proc"), ("/sys", userland.root / "sys"),
        ("/dev", userland.root / "dev"), ("/dev/shm", userland.root / "dev/shm"),
        (str(tmp_path / "results"), userland.root / "opt/repro-audit/repo/results")]


class Binfmt:
    """A binfmt_misc folder and the commands that change it."""

    def __init__(self, folder: Path, mounted: bool, entry: str | None) -> None:
        self.folder = folder
        self.points = ["/"] + ([str(folder)] if mounted else [])
        self.commands: list[list[str]] = []
        folder.mkdir()
        if entry is not None:
            (folder / "qemu-aarch64").write_text(entry, encoding="ascii")

    def table(self) -> str:
        return "".join(f"none {point} fs rw 0 0\n" for point in self.points)

    def run(self, *command: str) -> None:
        self.commands.append(list(command))
        if command[0] == "mount":
            self.points.append(command[-1])
        elif command[0] == "umount":
            self.points.remove(command[-1])
        elif command[:2] == ("update-binfmts", "--enable"):
            (self.folder / "qemu-aarch64").write_text("enabled\n", encoding="ascii")


def test_binfmt_is_mounted_and_enabled_where_it_is_not_then_undone(tmp_path: Path) -> None:
    binfmt = Binfmt(tmp_path / "binfmt_misc", mounted=False, entry=None)
    with Mounts(binfmt.run, binfmt.table) as mounts:
        assert qemu.enable_binfmt(mounts, binfmt.run, binfmt.folder)
        assert qemu.binfmt_enabled(binfmt.folder)
    assert binfmt.commands == [
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt.folder)],
        ["update-binfmts", "--enable", "qemu-aarch64"],
        ["umount", str(binfmt.folder)]]


def test_binfmt_already_set_up_is_left_as_it_is(tmp_path: Path) -> None:
    binfmt = Binfmt(tmp_path / "binfmt_misc", mounted=True, entry="enabled\ninterpreter x\n")
    with Mounts(binfmt.run, binfmt.table) as mounts:
        assert not qemu.enable_binfmt(mounts, binfmt.run, binfmt.folder)
    assert binfmt.commands == []


def test_the_aarch64_matrix_names_existing_scenarios_and_varies_the_emulated_cpu() -> None:
    from audit.config import matrix
    from audit.scenarios import registry

    loaded = matrix.load(Path(__file__).resolve().parents[2] / "matrices" / "aarch64.toml")
    registry.load_builtin()
    assert registry.select(loaded.select)  # a pattern matching nothing raises
    assert loaded.devices == ("cpu",)
    products = [loaded.settings, *loaded.also]
    assert {cpu for product in products for cpu in product["qemu_cpu"]} == {
        "max", "max-sve256", "max-nosve"}
    assert [entry.version for entry in loaded.torch] == ["2.9.1"]
