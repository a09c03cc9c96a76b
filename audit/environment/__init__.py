"""What a run finds itself in: versions, OS, CPU, devices, native libraries.

Imports torch only inside functions. May import: audit.errors, audit.config.
"""
