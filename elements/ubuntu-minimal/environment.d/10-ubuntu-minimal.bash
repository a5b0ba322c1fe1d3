# The Ubuntu release being built (see README.rst)
export DIB_RELEASE=${DIB_RELEASE:-jammy}
