# In the OpenStack CI gate only (its mirror_info.sh exists): point the build at the
# gate's mirrors.  11- so that DISTRO_NAME (set at 10-) is known.
_ci_info=${DIB_OS_CI_MIRROR_INFO:-/etc/ci/mirror_info.sh}
if [ ! -f "$_ci_info" ] && [ -f /tmp/in_target.d/mirror_info.sh ]; then
    # inside the chroot: the copy extra-data.d made
    _ci_info=/tmp/in_target.d/mirror_info.sh
fi
if [ -f "$_ci_info" ]; then
    # shellcheck disable=SC1090
    source "$_ci_info"
    case "${DISTRO_NAME:-}:${ARCH:-}" in
        ubuntu:arm64)
            export DIB_DISTRIBUTION_MIRROR=${NODEPOOL_UBUNTU_PORTS_MIRROR:-${DIB_DISTRIBUTION_MIRROR:-}} ;;
        ubuntu:*)
            export DIB_DISTRIBUTION_MIRROR=${NODEPOOL_UBUNTU_MIRROR:-${DIB_DISTRIBUTION_MIRROR:-}} ;;
        debian:*)
            export DIB_DISTRIBUTION_MIRROR=${NODEPOOL_DEBIAN_MIRROR:-${DIB_DISTRIBUTION_MIRROR:-}} ;;
        centos:*)
            if [ "${DIB_RELEASE:-}" = 9-stream ]; then
                export DIB_DISTRIBUTION_MIRROR=${NODEPOOL_CENTOS_MIRROR:-${DIB_DISTRIBUTION_MIRROR:-}}
                export DIB_EPEL_MIRROR=${NODEPOOL_EPEL_MIRROR:-${DIB_EPEL_MIRROR:-}}
            fi ;;
        opensuse:*)
            export DIB_DISTRIBUTION_MIRROR=${NODEPOOL_OPENSUSE_MIRROR:-${DIB_DISTRIBUTION_MIRROR:-}} ;;
    esac
    case "${DISTRO_NAME:-}" in
        ubuntu|debian)
            # the gate's apt mirrors are not signed
            case " ${DIB_DEBOOTSTRAP_EXTRA_ARGS:-} " in
                *" --no-check-gpg "*) ;;
                *) export DIB_DEBOOTSTRAP_EXTRA_ARGS="${DIB_DEBOOTSTRAP_EXTRA_ARGS:+$DIB_DEBOOTSTRAP_EXTRA_ARGS }--no-check-gpg" ;;
            esac ;;
    esac
    # the gate mirrors no universe/multiverse, over plain http
    export DIB_DISTRIBUTION_MIRROR_UBUNTU_IGNORE="(universe|multiverse)"
    export DIB_DISTRIBUTION_MIRROR_UBUNTU_INSECURE=1
    if [ -n "${DIB_OS_CI_YUM_REPOS:-}" ] && [ -d "$DIB_OS_CI_YUM_REPOS" ]; then
        case "${DISTRO_NAME:-}" in
            centos|openeuler)
                export DIB_YUM_MINIMAL_BOOTSTRAP_REPOS=$DIB_OS_CI_YUM_REPOS/$DISTRO_NAME-minimal/${DIB_RELEASE:-}/yum.repos.d ;;
        esac
    fi
fi
unset _ci_info
