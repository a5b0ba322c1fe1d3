# The Ubuntu release being built, bootstrapped with debootstrap (see README.rst)
export DIB_RELEASE=${DIB_RELEASE:-jammy}
# the host's (Debian) apt sources are no Ubuntu mirror: debootstrap's default, or
# DIB_DISTRIBUTION_MIRROR
export DIB_DEBOOTSTRAP_HOST_MIRROR=0
export DIB_UBUNTU_KEYRING=${DIB_UBUNTU_KEYRING:-/usr/share/keyrings/ubuntu-archive-keyring.gpg}
# debootstrap checks the archive's signature with the Ubuntu keyring
export DIB_DEBOOTSTRAP_EXTRA_ARGS="${DIB_DEBOOTSTRAP_EXTRA_ARGS:+$DIB_DEBOOTSTRAP_EXTRA_ARGS }--keyring=$DIB_UBUNTU_KEYRING"
