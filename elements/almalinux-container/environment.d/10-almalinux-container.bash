export DISTRO_NAME=almalinux
# the newest major release this element has a container file for
export DIB_RELEASE=${DIB_RELEASE:-10}
export EFI_BOOT_DIR="EFI/almalinux"
export DIB_YUM_MINIMAL_CREATE_INTERFACES=0
export YUM=dnf
