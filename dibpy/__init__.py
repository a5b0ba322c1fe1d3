"""dibpy: a disk-image builder that runs diskimage-builder elements."""

__version__ = "0.1.0"
