# ramdisk-base publishes the dracut initramfs post-install.d/99-build-dracut-ramdisk builds
export DIB_RAMDISK_PREBUILT=/boot/dracut-ramdisk.img
