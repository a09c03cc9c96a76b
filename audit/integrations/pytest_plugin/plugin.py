"""pytest plugin: the `repro` fixture, the `repro` marker and the --repro-* options.

    def test_forward(repro):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        repro.check({"weights": model.state_dict(), "out": model(torch.ones(2, 4))})

`repro.check` takes what a scenario returns and flattens, digests and samples it as the
runner does (`audit.capture.outputs`, `audit.run.partial_rows.describe_outputs`), when it is
called: a value
changed afterwards in place is checked as it was. `@pytest.mark.repro` runs the test body
twice, every RNG scrambled before each run as the runner does, and fails the test when an
output differs between the two. `--repro-save DIR` writes baselines, `--repro-check DIR`
fails a test whose value differs from its baseline, `--repro-results DIR` writes a results
file: the same files `repro-audit baseline` and `repro-audit report` read and write.

Registered through the `pytest11` entry point, so pytest loads this module in every run of
every venv where the package is installed: it imports no torch until a test uses the
fixture, and adds nothing to a test that does not.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from audit.errors import UserError
from audit.integrations.pytest_plugin.store import (
    FAILURE,
    PAYLOAD,
    Options,
    Store,
    files_of,
    finish,
    payload,
    remove_stale_results,
    write_results,
)

STORE = pytest.StashKey[Store]()
PAYLOADS = pytest.StashKey[list]()  # what the xdist workers handed over
SUMMARY = pytest.StashKey[list]()  # lines for the terminal summary
MARKER = "repro"
ROOT = pytest.StashKey[Path]()  # what scenario names are relative to (names.name_root)


def _root(config: pytest.Config) -> Path:
    from audit.integrations.pytest_plugin.names import name_root

    if ROOT not in config.stash:
        config.stash[ROOT] = name_root(config)
    return config.stash[ROOT]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("repro-audit", "repro-audit: bitwise baselines of seeded results")
    group.addoption("--repro-save", metavar="DIR", type=Path,
                    help="save the values tests hand to repro.check as baselines in DIR "
                         "(the files `repro-audit baseline save` writes)")
    group.addoption("--repro-update", action="store_true",
                    help="with --repro-save: rewrite existing baselines (after review)")
    group.addoption("--repro-check", metavar="DIR", type=Path,
                    help="fail a test whose value differs from its baseline in DIR")
    group.addoption("--repro-results", metavar="DIR", type=Path,
                    help="write a results file to DIR for `repro-audit report` / `diff`")
    group.addoption("--repro-twice", action="store_true",
                    help="run every test using the repro fixture twice, as @pytest.mark.repro")
    group.addoption("--repro-allow", metavar="AXES", default=None,
                    help="with --repro-check: axes along which a value may differ from the "
                         "nearest baseline of another environment or settings "
                         "(threads,cpu_capability,torch,...; ini repro_allow)")
    group.addoption("--repro-strict", action="store_true", default=None,
                    help="with --repro-check: fail when an output has no baseline in any "
                         "environment (ini repro_strict)")
    parser.addini("repro_allow", "axes --repro-check lets differ (see --repro-allow)",
                  type="args", default=[])
    parser.addini("repro_strict", "fail on outputs without baseline (see --repro-strict)",
                  type="bool", default=False)


def _allowed(config: pytest.Config) -> frozenset[str]:
    given = config.getoption("repro_allow")
    names = given.split(",") if given is not None else [
        part for item in config.getini("repro_allow") for part in str(item).split(",")]
    return frozenset(name.strip() for name in names if name.strip())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(name=None, runs=2): run the test body twice with every RNG "
        "scrambled before each run, and fail when a value handed to repro.check differs "
        "(name: the scenario name instead of the node id's)")
    options = Options(save_to=config.getoption("repro_save"),
                      update=config.getoption("repro_update"),
                      check_against=config.getoption("repro_check"),
                      results=config.getoption("repro_results"),
                      twice=config.getoption("repro_twice"),
                      allow=_allowed(config),
                      strict=bool(config.getoption("repro_strict")
                                  or config.getini("repro_strict")))
    problem = options.problem()
    if problem:
        raise pytest.UsageError(problem)
    worker = getattr(config, "workerinput", {}).get("workerid")
    store = Store(options, worker)
    config.stash[STORE] = store
    config.stash[PAYLOADS] = []
    controller = worker is None and getattr(config.option, "dist", "no") != "no"  # xdist
    try:
        if options.records and not controller:
            # Before any test runs: the MKL and oneDNN probes of the environment read what
            # those libraries print once per process (audit.environment.native).
            store.header()
        if options.check_against is not None:
            store.checker  # noqa: B018 - a folder without baselines: say so before any test
        if options.save_to is not None and not options.update and worker is None:
            from audit.judge.baseline import refuse_overwrite

            refuse_overwrite(options.save_to, [store.env_id], update=False)
    except UserError as error:
        raise pytest.UsageError(f"repro-audit: {error}") from None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float)) and not hasattr(value, "dtype")


def _scalars_as_tensors(value: Any) -> Any:
    """`value` with each Python int, float and bool inside it a 0-d tensor of torch's
    default dtype for its kind (float32 unless set_default_dtype says otherwise)."""
    if _is_scalar(value):
        import torch

        return torch.tensor(value)
    if isinstance(value, dict):
        return {key: _scalars_as_tensors(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scalars_as_tensors(item) for item in value]
    return value


class Repro:
    """The `repro` fixture's object: hand it a test's values with `check`."""

    def __init__(self, store: Store, item: pytest.Function, scenario: str, runs: int) -> None:
        self.store = store
        self.item = item
        self.scenario = scenario  # the name the rows and baselines of this test carry
        self.runs = runs  # 2: the body runs twice (the marker, or --repro-twice)
        self.run = 0  # which run is under way (0, then 1)
        self.values: list[dict[str, dict[str, Any]]] = [{}, {}]  # per run: output -> described
        self.places: dict[str, tuple[str, dict[str, str]]] = {}  # output -> device, settings

    def check(self, outputs: Any, name: str | None = None) -> dict[str, str]:
        """Flatten, digest and sample `outputs` now; returns each output's digest.

        `outputs` is what a scenario returns: a mapping of names to tensors or numpy
        arrays, nested mappings, lists and `state_dict()`s (flattened to dotted names).
        Call it as often as the test needs; `name` prefixes the outputs of one call
        (`name.weight`), so two calls may hand over values of the same names. A Python
        int, float or bool is the 0-d tensor `torch.tensor` makes of it.
        """
        __tracebackhide__ = True
        from audit.capture.outputs import flatten_outputs
        from audit.run.partial_rows import describe_outputs

        if _is_scalar(outputs) and not name:
            pytest.fail(f"repro.check: a {type(outputs).__name__} needs a name: "
                        f"repro.check(value, name='loss')", pytrace=False)
        try:
            flat = flatten_outputs(self.scenario,
                                   _scalars_as_tensors({name: outputs} if name else outputs))
        except UserError as error:
            pytest.fail(f"repro.check: {error}", pytrace=False)
        seen = self.values[self.run]
        again = [output for output in flat if output in seen]
        if again:
            pytest.fail(f"repro.check: output {again[0]!r} was already checked in this test "
                        "(give each call its own name=)", pytrace=False)
        described = describe_outputs(flat)
        seen.update(described)
        if self.store.options.records:
            settings: dict[str, dict[str, str]] = {}  # read once per device and call
            for output, tensor in flat.items():
                device = tensor.device.type
                if device not in settings:
                    settings[device] = self.store.settings(device)
                self.places.setdefault(output, (device, settings[device]))
        return {output: values["digest"] for output, values in described.items()}

    # --- the end of the test (called by the wrapper of the test function) ----------------

    def rows(self, second_error: str | None = None) -> list[dict[str, Any]]:
        """The test's rows, each value `repeatable` True or False when it ran twice, None
        when it ran once (nothing said whether it repeats)."""
        from audit.run.partial_rows import rows_of_described

        first, second = self.values
        if self.runs == 2:
            partial = rows_of_described(first, second, second_error)
        else:
            partial = [{"output": output, "status": "ok", "repeatable": None, "error": None,
                        **values} for output, values in first.items()]
        return [self.store.row(self.scenario, *self.places[item["output"]], **item)
                for item in partial]

    def failed_rows(self, error: BaseException) -> list[dict[str, Any]]:
        """One row per device the test used (cpu when none), as the runner's failed unit."""
        from audit.run.unit_runs import describe_error

        if isinstance(error, pytest.skip.Exception):
            status, text = "unavailable", f"skipped: {error.msg}"
        else:
            status, text = "error", describe_error(error)
        devices = sorted({device for device, _ in self.places.values()}) or ["cpu"]
        return [self.store.row(self.scenario, device, self.store.settings(device),
                               output=None, status=status, error=text) for device in devices]

    def not_repeatable(self, rows: list[dict[str, Any]]) -> list[str]:
        """Why outputs differed between the two runs, one line each (none: they repeated)."""
        from audit.judge.baseline import describe_gap, measure

        first, second = self.values
        lines = []
        for output in sorted(set(first) | set(second)):
            a, b = first.get(output), second.get(output)
            if a is not None and b is not None and a["digest"] == b["digest"]:
                continue
            if a is None or b is None:
                why = "only produced by the " + ("second" if a is None else "first") + " run"
            else:
                why = describe_gap(measure(a["sample"], b["sample"]), a["shape"], b["shape"])
            lines.append(f"NOT REPEATABLE {self.scenario}/{output}: {why}")
        if not lines:
            return []
        return [f"repro-audit: {len(lines)} output{'s' if len(lines) > 1 else ''} of "
                f"{self.item.nodeid} not repeatable: two runs of the test, every RNG "
                "(torch, CUDA, numpy, random) scrambled before each, gave other values",
                *lines, "seed every RNG the test draws from inside the test body: a seed "
                "set by a fixture is set once, before both runs"]


def _runs(item: pytest.Function, options: Options) -> tuple[int, str | None]:
    """How many times the body runs, and the scenario name the marker gives (or None)."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return (2 if options.twice else 1), None
    if marker.args:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.repro takes keywords only "
                                "(name=..., runs=1 or 2)")
    runs = marker.kwargs.get("runs", 2)
    if runs not in (1, 2):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.repro(runs={runs!r}): "
                                "1 or 2")
    return runs, marker.kwargs.get("name")


@pytest.fixture
def repro(request: pytest.FixtureRequest) -> Iterator[Repro]:
    """Hand the test's values to `repro.check(outputs)`; see this module's docstring."""
    from audit.integrations.pytest_plugin.names import scenario_name, stable_nodeid

    item = request.node
    if not isinstance(item, pytest.Function) or inspect.iscoroutinefunction(item.obj) \
            or inspect.isasyncgenfunction(item.obj):
        pytest.fail("the repro fixture works in test functions that are not async "
                    f"({item.nodeid})", pytrace=False)
    store = request.config.stash[STORE]
    runs, given = _runs(item, store.options)
    try:
        scenario = scenario_name(stable_nodeid(item.nodeid, item.path, _root(request.config)),
                                 given)
    except UserError as error:
        pytest.fail(str(error), pytrace=False)
    checked = Repro(store, item, scenario, runs)
    original = item.obj
    item.obj = _wrapped(original, checked)
    try:
        yield checked
    finally:
        item.obj = original


def _wrapped(test: Callable[..., Any], checked: Repro) -> Callable[..., Any]:
    """The test function run once or twice, its values then checked and recorded."""

    @functools.wraps(test)
    def run_test(*args: Any, **kwargs: Any) -> Any:
        from audit.run.unit_runs import describe_error, scramble_rng_states

        store, result = checked.store, None
        for number in range(checked.runs):
            checked.run = number
            if checked.runs == 2:
                scramble_rng_states()
            try:
                result = test(*args, **kwargs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:
                if store.options.records:
                    rows = (checked.rows(f"second run failed: {describe_error(error)}") if number
                            else checked.failed_rows(error))
                    with contextlib.suppress(UserError):  # the test's own error says more
                        store.record(checked.scenario, checked.item.nodeid, rows)
                raise
        rows = checked.rows() if store.options.records else []
        problems = checked.not_repeatable(rows) if checked.runs == 2 else []
        if store.options.records:
            try:
                store.record(checked.scenario, checked.item.nodeid, rows)
            except UserError as error:
                pytest.fail(str(error), pytrace=False)
        if store.options.check_against is not None and rows:
            problems += store.regressions(rows)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
        return result

    return run_test


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER) is not None and "repro" not in getattr(
            item, "fixturenames", ()):
        pytest.fail(f"{item.nodeid}: @pytest.mark.repro repeats what the test hands to "
                    "repro.check: the test needs the repro fixture", pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    store = config.stash.get(STORE, None)
    if store is None or not store.options.records:
        return
    try:
        written = write_results(store)
        if store.worker is not None:  # the controller saves and summarises
            config.workeroutput[PAYLOAD] = payload(store, written)
            return
        payloads = config.stash[PAYLOADS]
        files = ([store.as_file()] if store.rows else []) + files_of(payloads)
        names = [name for name in [written.name if written else None,
                                   *(item.get("results_file") for item in payloads)] if name]
        lines = []
        if store.options.results is not None and names:
            remove_stale_results(Path(store.options.results), names)
            rows = sum(len(item.rows) for item in files)
            lines.append(f"repro-audit: wrote {rows} rows to {store.options.results}/ "
                         f"({', '.join(sorted(names))})")
        lines += finish(store.options, files)
        if any(line.startswith(FAILURE) for line in lines):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    except UserError as error:
        lines = [f"repro-audit: error: {error}"]
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    config.stash[SUMMARY] = lines


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: a worker finished; keep what it recorded (a crashed worker hands nothing)."""
    handed = getattr(node, "workeroutput", {}).get(PAYLOAD)
    if handed:
        node.config.stash[PAYLOADS].append(handed)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("repro-audit")
        for line in lines:
            terminalreporter.write_line(line)
