# The install type's default is install-types' (source), except on CentOS and RHEL,
# where diskimage-builder makes it package: their Python tools expect the packaged pip.
case "${DISTRO_NAME:-}" in
    centos* | rhel*)
        export DIB_INSTALLTYPE_pip_and_virtualenv=${DIB_INSTALLTYPE_pip_and_virtualenv:-package}
        ;;
esac

# What follows is for the chroot phases, where dib-python's link exists.
if [ -L /usr/local/bin/dib-python ]; then
    # The interpreter itself, not the link: scripts pip writes keep its path in their
    # first line, and the link is removed from the finished image.
    _pav_python=$(readlink /usr/local/bin/dib-python)
    export DIB_PYTHON_PIP="$_pav_python -m pip"
    export DIB_PYTHON_VIRTUALENV="$_pav_python -m venv"
    unset _pav_python
    # With pip from the index, later hooks may pip install into the system Python, as
    # they could before distributions marked it externally managed; the marker itself
    # stays in the image (see README.rst).
    if [ "${DIB_INSTALLTYPE_pip_and_virtualenv:-${DIB_DEFAULT_INSTALLTYPE:-source}}" = source ]; then
        export PIP_BREAK_SYSTEM_PACKAGES=${PIP_BREAK_SYSTEM_PACKAGES:-1}
    fi
fi
