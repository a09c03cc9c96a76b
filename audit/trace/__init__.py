"""Op-level traces: recording a unit's aten ops, and finding where two traces diverge.

Recording: `record` (`traced`, torch-free until it runs) imports `recorder` (the dispatch
mode, torch), which digests tensors through `digests`, reads op schemas through `ops` and
finds the user's line through `frames`. Reading: `model` (Event, Trace), `files` (traces
files and journals), `samples`. Comparing: `align`, then `walk`, then `origin`. `needs`
says which units need a trace.

May import: audit.errors, audit.config, audit.environment, audit.capture, audit.store.
"""
