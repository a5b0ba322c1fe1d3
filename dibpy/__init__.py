"""dibpy: a disk-image builder that runs diskimage-builder elements."""

__version__ = "0.1.0"

#: the diskimage-builder release whose interface dibpy implements; disk-image-create
#: --version prints it alone, as diskimage-builder does, for scripts that compare versions
DIB_COMPAT_VERSION = "3.43.0"
