"""On-disk formats and their names: results files, trace file names, kept results, atomic writes.

Torch-free and pandas-free, so every stage (and nox on the host) may read them.
May import: audit.errors (and audit.environment lazily, for a header's env-id).
"""
