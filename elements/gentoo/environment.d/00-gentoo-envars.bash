# Gentoo: the distribution, its profile and how emerge is run.
export DIB_RELEASE=gentoo
export DISTRO_NAME=gentoo
export EFI_BOOT_DIR="EFI/gentoo"

export GENTOO_PORTAGE_CLEANUP=${GENTOO_PORTAGE_CLEANUP:-True}
export GENTOO_PYTHON_TARGETS=${GENTOO_PYTHON_TARGETS:-}
export GENTOO_OVERLAYS=${GENTOO_OVERLAYS:-}
export GENTOO_EMERGE_DEFAULT_OPTS=${GENTOO_EMERGE_DEFAULT_OPTS:-"--binpkg-respect-use --rebuilt-binaries=y --usepkg=y --with-bdeps=y --binpkg-changed-deps=y --quiet --jobs=2 --autounmask=n"}

export GENTOO_BASE_PROFILE="default/linux/${ARCH:-amd64}/23.0"
export GENTOO_PROFILE=${GENTOO_PROFILE:-$GENTOO_BASE_PROFILE}

# GENTOO_EMERGE_ENV: a bash array of VAR="value" settings exported for every emerge
# (a caller may declare their own array first).
if ! declare -p GENTOO_EMERGE_ENV 2>/dev/null | grep -q '^declare -a'; then
    GENTOO_EMERGE_ENV=(
        'USE="-build"'
        'FEATURES="binpkg-multi-instance buildpkg parallel-fetch parallel-install"'
        'PKGDIR="/tmp/portage-pkgdir"'
        'DISTDIR="/tmp/portage-distdir"'
        'PORTDIR="/tmp/portage-portdir"'
    )
    export GENTOO_EMERGE_ENV
fi
for _gentoo_setting in "${GENTOO_EMERGE_ENV[@]}"; do
    eval export "$_gentoo_setting"
done
unset _gentoo_setting

if [[ $GENTOO_PROFILE == *systemd* ]]; then
    export DIB_INIT_SYSTEM=${DIB_INIT_SYSTEM:-systemd}
else
    export DIB_INIT_SYSTEM=${DIB_INIT_SYSTEM:-openrc}
fi
