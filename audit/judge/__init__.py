"""Judging cells: compare results along each axis (pandas), pins, baselines, diffs.

May import every stage below it: config, environment, capture, trace, store.
"""
