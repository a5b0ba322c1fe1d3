# What every Ubuntu image shares (see README.rst)
export DISTRO_NAME=ubuntu
export DIB_DEBIAN_COMPONENTS=${DIB_DEBIAN_COMPONENTS:-main,universe}
export DIB_INIT_SYSTEM=systemd
