# The image is rebuilt from DIB_LOCAL_IMAGE's tree as it is: no package changes.
export DIB_SKIP_GRUB_PACKAGE_INSTALL=True
export DIB_SKIP_BASE_PACKAGE_INSTALL=1
export DIB_AVOID_PACKAGES_UPDATE=1
# the logical sector size DIB_LOCAL_IMAGE was made with (4096 for a 4K-sector image)
export DIB_SOURCE_BLOCK_SIZE=${DIB_SOURCE_BLOCK_SIZE:-512}
