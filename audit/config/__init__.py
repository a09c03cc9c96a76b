"""What to run: matrix files and the settings they name.

Torch-free, so nox imports it on the host. May import: audit.errors.
"""
