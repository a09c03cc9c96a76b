"""The `run` and `trace` commands: plan units, drive worker processes, write rows.

May import every stage below it: config, environment, scenarios, capture, trace, store.
"""
