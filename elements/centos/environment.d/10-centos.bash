# CentOS Stream from its cloud image (see README.rst)
export DISTRO_NAME=centos
export DIB_RELEASE=${DIB_RELEASE:-9-stream}
export YUM=${YUM:-dnf}
