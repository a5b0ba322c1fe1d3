# The partition layout this element gives; the bootloader element installs
# grub-pc for mbr/gpt and grub-efi for efi from it.
export DIB_BLOCK_DEVICE=efi
