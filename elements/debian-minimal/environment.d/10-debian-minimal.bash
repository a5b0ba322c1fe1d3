# The distribution being built.
export DISTRO_NAME=debian
export DIB_RELEASE=${DIB_RELEASE:-bookworm}
export DIB_DEBIAN_COMPONENTS=${DIB_DEBIAN_COMPONENTS:-main}
# bootstrap with mmdebstrap when the host has it (much faster than debootstrap)
export DIB_DEBOOTSTRAP_TOOL=${DIB_DEBOOTSTRAP_TOOL:-auto}
