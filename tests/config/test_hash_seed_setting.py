"""python_hash_seed: validated values, the worker default, and the value read back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from audit.config.settings import SETTINGS, process_environ, unset_value
from audit.errors import UserError
from audit.run.runner import worker_environ
from tests.support import ROOT


def test_values_are_random_or_an_integer_seed() -> None:
    setting = SETTINGS["python_hash_seed"]
    assert setting.validate("0", "x") == "0"
    assert setting.validate(" 0042 ", "x") == "42"
    assert setting.validate("Random", "x") == "random"
    for bad in ("-1", "4294967296", "abc", "1.5"):
        with pytest.raises(UserError, match="python_hash_seed"):
            setting.validate(bad, "--settings")


def test_workers_get_seed_zero_unless_the_combination_chooses() -> None:
    assert process_environ({}, run_defaults=True)["PYTHONHASHSEED"] == "0"
    assert process_environ({"python_hash_seed": "random"},
                           run_defaults=True)["PYTHONHASHSEED"] == "random"
    assert process_environ({"threads": "2"}, run_defaults=True)["PYTHONHASHSEED"] == "0"
    assert "PYTHONHASHSEED" not in process_environ({"threads": "2"})
    assert worker_environ({"threads": "2"})["PYTHONHASHSEED"] == "0"


def test_files_without_it_ran_with_random_seeds() -> None:
    assert unset_value("python_hash_seed", "cpu") == "random"


@pytest.mark.parametrize(("variable", "expected"),
                         [("0", "0"), ("7", "7"), ("random", "random"), (None, "random")])
def test_read_back_in_a_fresh_interpreter(variable: str | None, expected: str) -> None:
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    environ.pop("PYTHONHASHSEED", None)
    if variable is not None:
        environ["PYTHONHASHSEED"] = variable
    code = ("from audit.environment.readback import python_hash_seed; "
            "print(python_hash_seed(''))")
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == expected
