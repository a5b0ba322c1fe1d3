# openSUSE Leap from its cloud image (see README.rst)
export DISTRO_NAME=opensuse
export DIB_RELEASE=${DIB_RELEASE:-15.5}
export EFI_BOOT_DIR="EFI/opensuse"
export DIB_INIT_SYSTEM=systemd
