"""A stand-in for the few ``diskimage_builder`` modules diskimage-builder's element tools
import (``package-installs-squash`` imports ``logging_config``).

dibpy appends ``dibpy/lib/python`` to the hooks' ``PYTHONPATH`` only when no real
diskimage-builder is importable, so an installed diskimage-builder always wins.  This is
dibpy's own implementation of the same small API, not diskimage-builder's code.
"""
