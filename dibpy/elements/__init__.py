"""Finding, reading and resolving elements.

The element library itself lives in the top-level ``elements/`` directory of the
project (shipped inside the package as ``dibpy/library`` when installed).
"""

from dibpy.elements.discovery import ElementLibrary, builtin_elements_dir, find_library
from dibpy.elements.model import PHASES, Element
from dibpy.elements.resolve import Resolution, resolve

__all__ = [
    "PHASES",
    "Element",
    "ElementLibrary",
    "Resolution",
    "builtin_elements_dir",
    "find_library",
    "resolve",
]
