# Fedora from its cloud image (see README.rst)
export DISTRO_NAME=fedora
export DIB_RELEASE=${DIB_RELEASE:-41}
export EFI_BOOT_DIR="EFI/fedora"
export YUM=dnf
