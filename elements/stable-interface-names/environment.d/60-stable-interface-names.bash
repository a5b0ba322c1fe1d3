# no net.ifnames=0 on the kernel command line (read by the bootloader element)
if [ -n "${DIB_BOOTLOADER_DEFAULT_CMDLINE:-}" ]; then
    DIB_BOOTLOADER_DEFAULT_CMDLINE=$(printf '%s' "$DIB_BOOTLOADER_DEFAULT_CMDLINE" | sed -E 's/(^| )net\.ifnames=0( |$)/ /g; s/  +/ /g; s/^ //; s/ $//')
    export DIB_BOOTLOADER_DEFAULT_CMDLINE
fi
