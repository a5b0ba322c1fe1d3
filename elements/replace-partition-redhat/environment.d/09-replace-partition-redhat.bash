# replace-partition for a Red Hat family image: the values replace-partition needs,
# with the family's defaults (DISTRO_NAME itself must be given).
if [ -z "${DISTRO_NAME:-}" ]; then
    echo "replace-partition-redhat: set DISTRO_NAME to the distribution of DIB_LOCAL_IMAGE (rhel, centos, rocky, almalinux...)" >&2
    return 1 2> /dev/null || exit 1
fi
export DIB_RELEASE=${DIB_RELEASE:-9}
case "$DISTRO_NAME" in
    rhel*) export EFI_BOOT_DIR=EFI/redhat ;;
    *) export EFI_BOOT_DIR=EFI/$DISTRO_NAME ;;
esac
export DIB_BLOCK_DEVICE=efi
export DIB_INIT_SYSTEM=systemd
