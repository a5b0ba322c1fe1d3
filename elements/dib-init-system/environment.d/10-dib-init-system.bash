# DIB_INIT_SYSTEM: the init system of the image (systemd, openrc, sysv).
# A value from the user's environment wins; otherwise it is detected from the image
# root ($TARGET_ROOT on the host, / inside the chroot where TARGET_ROOT is a host path),
# and defaults to systemd while the root is still empty.
if [ -z "${DIB_INIT_SYSTEM:-}" ]; then
    _dib_init_root=/
    if [ -n "${TARGET_ROOT:-}" ] && [ -d "${TARGET_ROOT}" ]; then
        _dib_init_root=$TARGET_ROOT
    fi
    if [ -e "$_dib_init_root/usr/lib/systemd/systemd" ] || [ -e "$_dib_init_root/lib/systemd/systemd" ]; then
        DIB_INIT_SYSTEM=systemd
    elif [ -e "$_dib_init_root/sbin/openrc-run" ] || [ -e "$_dib_init_root/usr/sbin/openrc-run" ]; then
        DIB_INIT_SYSTEM=openrc
    elif [ -e "$_dib_init_root/etc/inittab" ]; then
        DIB_INIT_SYSTEM=sysv
    else
        DIB_INIT_SYSTEM=systemd
    fi
    unset _dib_init_root
fi
export DIB_INIT_SYSTEM
