"""Errors that reach the user as one line and exit code 2, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a file, key or value the user gave. The message names it."""
