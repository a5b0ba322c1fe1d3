# The Python interpreter of build scripts in the chroot
export DIB_PYTHON_VERSION=${DIB_PYTHON_VERSION:-3}
export DIB_PYTHON=${DIB_PYTHON:-python${DIB_PYTHON_VERSION}}
