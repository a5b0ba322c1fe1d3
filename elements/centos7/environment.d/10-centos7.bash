# CentOS 7 from its cloud image (see README.rst)
export DISTRO_NAME=centos
export DIB_RELEASE=${DIB_RELEASE:-7}
export YUM=${YUM:-yum}
