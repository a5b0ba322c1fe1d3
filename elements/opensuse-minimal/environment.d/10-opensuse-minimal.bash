# openSUSE Leap bootstrapped from packages with the host's zypper (see README.rst)
export DISTRO_NAME=opensuse
DIB_RELEASE=${DIB_RELEASE:-15.5}
export DIB_RELEASE=${DIB_RELEASE,,}
export EFI_BOOT_DIR="EFI/opensuse"
export DIB_OPENSUSE_PATTERNS=${DIB_OPENSUSE_PATTERNS:-patterns-openSUSE-base}
export DIB_INIT_SYSTEM=systemd
# Leap's package and update repositories under the mirror
case "$DIB_RELEASE" in
    tumbleweed)
        _dib_suse="oss=@DIB_DISTRIBUTION_MIRROR@/tumbleweed/repo/oss update=@DIB_DISTRIBUTION_MIRROR@/update/tumbleweed" ;;
    *)
        _dib_suse="oss=@DIB_DISTRIBUTION_MIRROR@/distribution/leap/$DIB_RELEASE/repo/oss update=@DIB_DISTRIBUTION_MIRROR@/update/leap/$DIB_RELEASE/oss" ;;
esac
export ZYPPER_REPOS=${ZYPPER_REPOS:-$_dib_suse}
unset _dib_suse
