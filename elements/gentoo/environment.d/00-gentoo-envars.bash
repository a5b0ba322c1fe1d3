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

# This file is sourced before every hook, root.d's first: a bad value stops the
# build there, before the stage3 is fetched, with one line naming the variable.
_gentoo_bad() {
    echo "gentoo: $*" >&2
    return 1
}
case $GENTOO_PORTAGE_CLEANUP in
    True | False) ;;
    *) _gentoo_bad "GENTOO_PORTAGE_CLEANUP='$GENTOO_PORTAGE_CLEANUP': use True (drop the portage tree from the image) or False (keep it)" ;;
esac
for _gentoo_word in $GENTOO_PYTHON_TARGETS; do
    [[ $_gentoo_word =~ ^(python[0-9]+_[0-9]+t?|pypy[0-9]*(_[0-9]+)?)$ ]] ||
        _gentoo_bad "GENTOO_PYTHON_TARGETS: '$_gentoo_word' is not a PYTHON_TARGETS value; write them like \"python3_12 python3_13\""
done
for _gentoo_word in $GENTOO_OVERLAYS; do
    [[ $_gentoo_word =~ ^[A-Za-z0-9_][A-Za-z0-9_-]*$ ]] ||
        _gentoo_bad "GENTOO_OVERLAYS: '$_gentoo_word' is not an overlay name; give the names of official overlays (eselect repository list), space separated"
done
for _gentoo_word in $GENTOO_EMERGE_DEFAULT_OPTS; do
    [[ $_gentoo_word == -* ]] ||
        _gentoo_bad "GENTOO_EMERGE_DEFAULT_OPTS: '$_gentoo_word' is not an option; it holds emerge options only (packages go in package-installs.yaml or -p)"
done
[[ $GENTOO_PROFILE =~ ^[A-Za-z0-9_.+/-]+$ && $GENTOO_PROFILE != /* && $GENTOO_PROFILE != *..* ]] ||
    _gentoo_bad "GENTOO_PROFILE='$GENTOO_PROFILE' is not a profile name; give one relative to the tree's profiles/, like $GENTOO_BASE_PROFILE"

# GENTOO_EMERGE_ENV: a bash array of VAR="value" settings exported for every emerge
# (an environment.d file sorted before this one may declare its own).
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
for _gentoo_word in "${GENTOO_EMERGE_ENV[@]}"; do
    [[ $_gentoo_word =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] ||
        _gentoo_bad "GENTOO_EMERGE_ENV: '$_gentoo_word' is not a VAR=\"value\" setting; each item of the array sets one variable"
    eval export "$_gentoo_word"
done
unset _gentoo_word
unset -f _gentoo_bad

if [[ $GENTOO_PROFILE == *systemd* ]]; then
    export DIB_INIT_SYSTEM=${DIB_INIT_SYSTEM:-systemd}
else
    export DIB_INIT_SYSTEM=${DIB_INIT_SYSTEM:-openrc}
fi
