# The partition layout this element gives is efi's (4 KiB sectors): the bootloader
# element installs grub-efi (and BIOS GRUB on amd64) for it.
export DIB_BLOCK_DEVICE=efi
