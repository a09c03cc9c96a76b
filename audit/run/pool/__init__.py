"""Worker processes: scheduling, core budget, fork servers, background priority.

Knows the worker only by its module path; may import audit.scenarios (to preload them).
"""
