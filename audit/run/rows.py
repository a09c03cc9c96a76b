"""Results rows of a run's units: what a worker reported, completed with every setting.

Each row records every setting, chosen or not: those of the unit's device as the worker
read them back (process settings at start-up, run settings per unit), the others as n/a.
Results of any two matrices then compare on what they share. A unit whose requested value
did not take effect is one `unavailable` row, with the reason its setting gives
(audit.config.settings.Setting.not_applied): its outputs were made under other settings.
"""

from __future__ import annotations

from typing import Any

from audit.config.settings import NOT_APPLICABLE, SETTINGS, run_defaults, with_unset_values
from audit.run.plan import Unit, Unrunnable
from audit.store.results import make_row


class RowMaker:
    """Rows of the units of one run, in one environment and torch version."""

    def __init__(self, env_id: str, torch_version: str) -> None:
        self.env_id = env_id
        self.torch_version = torch_version
        self.missing: dict[str, str] = {}  # setting -> why its library is absent (workers)

    def row(self, scenario: str, device: str, settings: dict[str, str], **values: Any
            ) -> dict[str, Any]:
        return make_row(scenario=scenario, device=device, settings=settings,
                        torch_version=self.torch_version, env_id=self.env_id, **values)

    def unrunnable(self, unit: Unrunnable) -> dict[str, Any]:
        """The row of a unit that cannot run here: every setting at its requested or unset
        value, nothing having read one back."""
        return self.row(unit.scenario.name, unit.device,
                        with_unset_values({**run_defaults(unit.device), **unit.settings},
                                          unit.device),
                        requested=unit.settings, status="unavailable", error=unit.reason)

    def settings_in_effect(self, unit: Unit, effective: dict[str, str]
                           ) -> tuple[dict[str, str], str | None]:
        """Every setting to record, and why the unit is unavailable when one did not take.

        Where a value was never read back (a unit that crashed), it is the requested or
        unset value.
        """
        recorded: dict[str, str] = {}
        for name, setting in SETTINGS.items():
            if not setting.applies_to(unit.device):
                recorded[name] = NOT_APPLICABLE
                continue
            value = (effective.get(name) or unit.settings.get(name) or setting.run_default
                     or setting.default)
            if value is not None:
                recorded[name] = value
        for name, requested in unit.settings.items():
            if requested == NOT_APPLICABLE or name not in SETTINGS:
                continue
            if name in self.missing:
                recorded[name] = requested
                return recorded, f"{name} {requested}: {self.missing[name]}"
            why = SETTINGS[name].not_applied(requested, effective.get(name))
            if why is not None:
                recorded[name] = requested
                return recorded, why
        return recorded, None

    def failed(self, unit: Unit, effective: dict[str, str], **values: Any) -> dict[str, Any]:
        """The row of a unit whose worker failed it (timeout, crash)."""
        settings, _ = self.settings_in_effect(unit, effective)
        return self.row(unit.scenario.name, unit.device, settings, requested=unit.settings,
                        **values)

    def finished(self, unit: Unit, partial_rows: list[dict[str, Any]],
                 effective: dict[str, str], seconds: float) -> list[dict[str, Any]]:
        """The rows of a unit its worker ran: one per output (audit.run.partial_rows)."""
        settings, not_in_effect = self.settings_in_effect(unit, effective)
        if not_in_effect:
            return [self.row(unit.scenario.name, unit.device, settings, requested=unit.settings,
                             status="unavailable", error=not_in_effect)]
        return [self.row(unit.scenario.name, unit.device, settings, requested=unit.settings,
                         seconds=seconds, **partial)
                for partial in partial_rows]
