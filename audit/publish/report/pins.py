"""What to pin: per breaking axis, the setting values under which its break disappears or
shrinks (`audit.judge.pin`), and the one value to suggest."""

from __future__ import annotations

from audit.judge.axes import axis_title, value_label
from audit.judge.compare import Comparison
from audit.judge.pin import COVERAGE, AxisPins, Restricted, what_to_pin
from audit.publish.markdown import escape, short_list, table
from audit.publish.report.axes import anchor


def pin_text(pins: tuple[tuple[str, str], ...], joiner: str = ", ") -> str:
    """'threads=1, cpu_capability=default (scalar)', escaped."""
    return joiner.join(f"{escape(axis_title(column))}={escape(value_label(column, value))}"
                       for column, value in pins)


def pin_effect(found: AxisPins, option: Restricted) -> str:
    if option.covered == 0:
        return "none of them compared"
    effect = ("removes the break" if option.removes() else
              "shrinks the break" if option.helps() else "none")
    if option.helps() and not found.enough(option):
        effect += ", but too few of them compared to suggest"
    return f"**{effect}** (suggested)" if option == found.best() else effect


def pin_section(result: Comparison) -> list[str]:
    """What to pin: for each breaking axis, under which values of the other settings the
    break disappears or shrinks (`audit.judge.pin`), and the one value to suggest."""
    if not result.axes:
        return []
    found = what_to_pin(result)
    lines = ["## What to pin", ""]
    if not found:
        return lines + ["No output breaks along any axis: there is nothing to pin.", ""]
    lines += [
        "What to set so that results come out the same there too. For each axis along which "
        "outputs break, its comparisons (those of its table) are counted again where another "
        "setting had one value: the break as it is with that setting pinned. Only settings "
        "varied in these results are suggested, never the torch version, the device or the "
        "machine; a setting that is the axis itself can of course be pinned too. A value is "
        "suggested when it removes or shrinks the break and its comparisons include at least "
        f"{COVERAGE:.0%} of the outputs that break (fewer could look better for lack of "
        "comparisons alone): of those, the one under which the fewest outputs differ. Two "
        "settings together are tried where no one value removes the break.", ""]
    rows = []
    for axis_pins in found:
        best = axis_pins.best()
        title = escape(axis_title(axis_pins.axis))
        pin = (pin_text(best.pins) if best is not None
               else "none found" if axis_pins.options else "nothing varied to pin")
        rows.append([f"[{title}](#{anchor(axis_pins.axis)})",
                     f"{axis_pins.differing} of {axis_pins.compared}", pin,
                     f"{best.differing} of {best.compared}" if best is not None else "-"])
    lines += [table(["across", "outputs that differ", "pin", "then differ"], rows), ""]
    for axis_pins in found:
        lines += pin_details(axis_pins)
    return lines


def pin_details(found: AxisPins) -> list[str]:
    """One axis: the break under each value of each other setting, then the suggestion."""
    title = escape(axis_title(found.axis))
    lines = [f"**Across {title}**: {found.differing} of {found.compared} outputs differ.", ""]
    if not found.options:
        return lines + ["No other setting was varied in these results, so none can be "
                        "suggested.", ""]
    rows = [[pin_text(option.pins), f"{option.differing} of {option.compared}",
             str(option.covered), pin_effect(found, option)] for option in found.options]
    lines += [table(["with", "outputs that differ", f"of the {found.differing} that break, "
                     "compared", "effect"], rows), ""]
    best = found.best()
    if best is None:
        shrinking = any(option.helps() for option in found.options)
        lines += ["Values that shrink it were compared on too few of its breaking outputs to "
                  "be suggested." if shrinking else
                  "No setting varied in these results removes or shrinks this break.", ""]
        return lines
    text = (f"Suggested: pin {pin_text(best.pins, ' and ')}; then {best.differing} of "
            f"{best.compared} outputs differ across {title} ({found.differing} of "
            f"{found.compared} without).")
    if found.still_differing:
        text += " Still differing: " + short_list(
            f"{scenario}: {output}" for scenario, output in found.still_differing) + "."
    return lines + [text, ""]
