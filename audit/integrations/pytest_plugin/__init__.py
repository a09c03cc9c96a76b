"""The pytest plugin: options and the `repro` fixture, the baseline store, test names.

Split as pytest-regressions splits its own: `plugin` registers hooks and fixtures and imports
each implementation inside them, so loading the plugin imports no torch.
"""
