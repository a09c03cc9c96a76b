"""Command line: `python -m audit` / `repro-audit` with run, report, list and env.

Bad input ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from audit.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="repro-audit",
        description="Audit whether seeded PyTorch results reproduce across versions, "
                    "devices and settings.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run scenarios in this interpreter's torch")
    run.add_argument("--matrix", help="matrix file (scenarios, devices, settings)")
    run.add_argument("--scenarios", action="append", default=[], metavar="FILE.py",
                     help="a file of your own scenarios (imported from its path; repeatable)")
    run.add_argument("--select", action="append", default=[], metavar="GLOB",
                     help="scenario names to run, e.g. 'rng.*' (repeatable; default: all)")
    run.add_argument("--settings", action="append", default=[], metavar="NAME=V1,V2",
                     help="settings to vary, e.g. threads=1,2 (repeatable)")
    run.add_argument("--shard", metavar="I/N",
                     help="run only shard I of N of the selection (CI jobs split a suite)")
    run.add_argument("--devices", help="comma-separated devices (default: matrix or cpu,cuda,mps)")
    run.add_argument("--timeout", type=float, help="seconds per scenario before `timeout`")
    run.add_argument("--out", default="results", help="folder for the results file")
    run.add_argument("--keep-tensors", action="store_true",
                     help="also store every output's full values under DIR/tensors/ "
                          "(exact distances in the report)")
    run.add_argument("--trace", action="store_true",
                     help="after the audit, run each unit whose outputs differ along this "
                          "run's settings once more with every op recorded, beside the "
                          "results (<results>.traces.jsonl.gz): the report then says where a "
                          "differing output first diverges (see also `trace --for`)")
    run.add_argument("--trace-all", action="store_true",
                     help="like --trace, but trace every unit, differing or not")
    run.add_argument("--no-trace", action="store_true",
                     help="no traces, whatever the matrix says")
    run.add_argument("--jobs", metavar="N",
                     help="cores to keep busy: one-thread settings combinations run side by "
                          "side, those using all cores alone (default: every core here)")
    run.add_argument("--resume", action="store_true",
                     help="keep the rows of an interrupted run and run only what is missing")

    trace = commands.add_parser(
        "trace", help="trace this environment's units that differ from other results files")
    trace.add_argument("--for", dest="paths", nargs="+", required=True, metavar="RESULTS",
                       help="results files, folders or globs: this environment's and those "
                            "it is compared with (e.g. results/ reports/results/)")
    trace.add_argument("--in", dest="own", nargs="+", default=[], metavar="RESULTS",
                       help="where this environment's results are (default: among --for); "
                            "results elsewhere of the same machine and torch version are "
                            "older runs and left out")
    trace.add_argument("--matrix", help="matrix file (its scenario files and timeout)")
    trace.add_argument("--scenarios", action="append", default=[], metavar="FILE.py",
                       help="a file of your own scenarios the results came from (repeatable)")
    trace.add_argument("--timeout", type=float, help="seconds per traced unit")
    trace.add_argument("--jobs", metavar="N", help="cores to keep busy (default: every core)")

    report = commands.add_parser("report", help="merge results files into a markdown report")
    report.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    report.add_argument("--out", default="reports", help="folder for README.md")

    keep = commands.add_parser(
        "keep", help="add results files to the kept ones a published report merges "
                     "(one per machine and torch version)")
    keep.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    keep.add_argument("--to", default="reports/results", help="folder of kept results")

    commands.add_parser("list", help="print the scenarios: name, then description")
    listing = commands.choices["list"]
    listing.add_argument("--scenarios", action="append", default=[], metavar="FILE.py")

    commands.add_parser("env", help="print the recorded environment as JSON")

    changelog = commands.add_parser(
        "changelog", help="which torch release changed which output, from many releases")
    changelog.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    changelog.add_argument("--out", default="reports/changelog.md", help="markdown file")

    _add_baseline_parser(commands)

    diff = commands.add_parser(
        "diff", help="compare two results sets; exit 1 when any output differs")
    diff.add_argument("a", metavar="A", help="results file, folder or (quoted) glob")
    diff.add_argument("b", metavar="B", help="results file, folder or (quoted) glob")
    return parser


def _add_baseline_parser(commands: Any) -> None:
    """`baseline save` and `baseline check`."""
    baseline = commands.add_parser(
        "baseline", help="save reviewed digests per environment, or check results against them")
    baseline_commands = baseline.add_subparsers(dest="baseline_command", required=True)
    save = baseline_commands.add_parser(
        "save", help="store every ok, repeatable output as a baseline (<env-id>.json)")
    save.add_argument("paths", nargs="+", metavar="RESULTS", help="results files, folders, globs")
    save.add_argument("--to", required=True, metavar="DIR", help="folder of baselines")
    save.add_argument("--update", action="store_true",
                      help="rewrite existing baselines (after reviewing the change)")
    check = baseline_commands.add_parser(
        "check", help="exit 1 when an output differs from its baseline, 0 when all match")
    check.add_argument("paths", nargs="+", metavar="RESULTS", help="results files, folders, globs")
    check.add_argument("--against", required=True, metavar="DIR", help="folder of baselines")
    check.add_argument("--allow", default="", metavar="AXES",
                       help="axes along which a value may differ from the nearest baseline "
                            "of another environment or settings (threads,torch,...)")
    check.add_argument("--strict", action="store_true",
                       help="exit 1 when an output has no baseline in any environment")


def check_out_folder(out: str, flag: str = "--out") -> None:
    """`--out` names a folder to write into: an existing file there is a user error."""
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"{flag} {out}: not a folder")


def command_run(args: argparse.Namespace) -> int:
    from audit.run.run_command import RunOptions, run_audit

    check_out_folder(args.out)
    options = RunOptions.from_arguments(args)
    summary = run_audit(options)
    print(summary)
    return 0


def command_trace(args: argparse.Namespace) -> int:
    from audit.run.run_command import parse_jobs
    from audit.run.trace_command import TraceOptions, retrace

    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout must be a positive number of seconds, not {args.timeout!r}")
    options = TraceOptions(paths=list(args.paths), own=list(args.own),
                           jobs=parse_jobs(args.jobs), timeout=args.timeout)
    if args.matrix:
        from audit.config import matrix as matrix_module

        loaded = matrix_module.load(args.matrix)
        options.scenario_files = list(loaded.scenario_files)
        options.timeout = options.timeout or loaded.timeout
    options.scenario_files += [str(Path(path).resolve()) for path in args.scenarios]
    print(retrace(options))
    return 0


def command_report(args: argparse.Namespace) -> int:
    from audit.publish.report import write_report

    check_out_folder(args.out)
    path = write_report(args.paths, Path(args.out))
    print(f"wrote {path}")
    return 0


def command_keep(args: argparse.Namespace) -> int:
    from audit.store.kept import keep

    check_out_folder(args.to, "--to")
    for line in keep(args.paths, Path(args.to)):
        print(line)
    return 0


def command_changelog(args: argparse.Namespace) -> int:
    from audit.publish.changelog import write_changelog

    print(f"wrote {write_changelog(args.paths, Path(args.out))}")
    return 0


def command_list(args: argparse.Namespace) -> int:
    from audit.scenarios import registry

    registry.load_builtin()
    for file in args.scenarios:
        registry.load_file(file)
    for name, item in registry.all_scenarios().items():
        print(f"{name}  {item.description}".rstrip())  # a description is optional
    return 0


def command_env(_: argparse.Namespace) -> int:
    from audit.environment.collect import collect, env_id

    environment = collect()
    print(json.dumps({"env_id": env_id(environment), **environment}, indent=2, sort_keys=True))
    return 0


def command_baseline(args: argparse.Namespace) -> int:
    from audit.judge import baseline

    if args.baseline_command == "save":
        count = baseline.save(args.paths, Path(args.to), update=args.update)
        print(f"saved {count} outputs to {args.to}")
        return 0
    allow = frozenset(name.strip() for name in args.allow.split(",") if name.strip())
    result = baseline.check(args.paths, Path(args.against), allow, args.strict)
    for line in baseline.format_check(result):
        print(line)
    return result.exit_code


def command_diff(args: argparse.Namespace) -> int:
    from audit.judge.diff import diff, format_diff

    result = diff([args.a], [args.b])
    for line in format_diff(result):
        print(line)
    return result.exit_code


COMMANDS: dict[str, Any] = {
    "run": command_run, "report": command_report, "list": command_list, "env": command_env,
    "baseline": command_baseline, "diff": command_diff, "changelog": command_changelog,
    "keep": command_keep, "trace": command_trace,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"repro-audit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repro-audit: interrupted", file=sys.stderr)
        return 130
