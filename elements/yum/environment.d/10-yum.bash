# yum or dnf (the OS element sets YUM; install-packages falls back to what the image has)
export YUM=${YUM:-}
