"""How other tools use repro-audit: the pytest plugin, the GitHub job matrix, uv sources.

May import every stage; nothing else in the package imports it.
"""
