# pip-cache: pip in the chroot caches its downloads in /tmp/pip (the bind mount)
export PIP_DOWNLOAD_CACHE=/tmp/pip
export PIP_CACHE_DIR=/tmp/pip
