"""repro-audit: does a seeded PyTorch result come out the same on another setup?

Importing the package imports no torch: the report side runs without it.
"""

from __future__ import annotations

from audit.scenarios.context import Context
from audit.scenarios.registry import Unavailable, scenario

__all__ = ["Context", "Unavailable", "scenario", "__version__"]
__version__ = "0.1.0"
