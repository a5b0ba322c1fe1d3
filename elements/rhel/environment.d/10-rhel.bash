# RHEL from its KVM guest image (see README.rst)
export DISTRO_NAME=rhel
export DIB_RELEASE=${DIB_RELEASE:-9}
export EFI_BOOT_DIR="EFI/redhat"
export YUM=dnf
