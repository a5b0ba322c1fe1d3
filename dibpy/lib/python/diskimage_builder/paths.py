"""``get_path("lib" | "elements")``: where the shell library and built-in elements are.

For dibpy these are ``dibpy/lib`` (``$_LIB``) and the top-level ``elements/``.
"""

from __future__ import annotations

import os
import sys

_LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# an installed dibpy keeps its elements in the package's library/, a checkout in elements/
_INSTALLED = os.path.join(os.path.dirname(_LIB), "library")
_CHECKOUT = os.path.join(os.path.dirname(os.path.dirname(_LIB)), "elements")
_PATHS = {"lib": _LIB, "elements": _INSTALLED if os.path.isdir(_INSTALLED) else _CHECKOUT}


def get_path(var: str) -> str:
    if var not in _PATHS:
        print(f"Unknown path request: {var!r} (known: lib, elements)", file=sys.stderr)
        sys.exit(1)
    return _PATHS[var]


def show_path(var: str) -> None:
    print(get_path(var))
