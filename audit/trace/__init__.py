"""Op-level traces: recording a unit's aten ops, and finding where two traces diverge.

May import: audit.errors, audit.config, audit.environment, audit.capture, audit.store.
"""
