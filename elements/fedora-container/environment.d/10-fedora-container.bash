export DISTRO_NAME=fedora
# the newest major release this element has a container file for
export DIB_RELEASE=${DIB_RELEASE:-41}
export EFI_BOOT_DIR="EFI/fedora"
export YUM=dnf
