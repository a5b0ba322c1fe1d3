# glean writes NetworkManager configuration by default on the Red Hat family members
# that have no other network service left; elsewhere it writes the distribution's own
# network files (ifupdown, ifcfg scripts, wicked).
case "${DISTRO_NAME:-}" in
    almalinux | centos | fedora | rocky) _simple_init_nm=1 ;;
    *) _simple_init_nm=0 ;;
esac
export DIB_SIMPLE_INIT_NETWORKMANAGER=${DIB_SIMPLE_INIT_NETWORKMANAGER:-$_simple_init_nm}
unset _simple_init_nm

# Fedora and AlmaLinux/Rocky 8 and later ship no legacy network scripts.
if [ "$DIB_SIMPLE_INIT_NETWORKMANAGER" = 0 ]; then
    case "${DISTRO_NAME:-}" in
        fedora)
            echo "simple-init: DIB_SIMPLE_INIT_NETWORKMANAGER=0 is not possible on fedora (NetworkManager only)" >&2
            return 1 2>/dev/null || exit 1
            ;;
        almalinux | rocky)
            _simple_init_major=${DIB_RELEASE:-0}
            if [ "${_simple_init_major%%.*}" -gt 7 ] 2>/dev/null; then
                echo "simple-init: DIB_SIMPLE_INIT_NETWORKMANAGER=0 is not possible on $DISTRO_NAME $DIB_RELEASE (NetworkManager only)" >&2
                return 1 2>/dev/null || exit 1
            fi
            unset _simple_init_major
            ;;
    esac
fi

# glean's git checkout (source-repository-simple-init) is used only by the "repo"
# install type; for the others it is not fetched (diskimage-builder fetches it anyway).
# DIB_INSTALLTYPE_glean, which source-repositories reads, still wins when set.
if [ "${DIB_INSTALLTYPE_simple_init:-${DIB_DEFAULT_INSTALLTYPE:-source}}" != repo ]; then
    export DIB_INSTALLTYPE_glean=${DIB_INSTALLTYPE_glean:-package}
fi
