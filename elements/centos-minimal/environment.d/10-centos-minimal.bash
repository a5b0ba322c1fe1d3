# CentOS Stream bootstrapped from packages with the host's dnf (see README.rst)
export DISTRO_NAME=centos
export DIB_RELEASE=${DIB_RELEASE:-9-stream}
export EFI_BOOT_DIR="EFI/centos"
export YUM=dnf
# Stream 10's rpm keeps its database in /usr/lib/sysimage/rpm
case "$DIB_RELEASE" in
    9-stream) ;;
    *) export DIB_YUM_MINIMAL_RPMDB_PATH=${DIB_YUM_MINIMAL_RPMDB_PATH:-/usr/lib/sysimage/rpm} ;;
esac
