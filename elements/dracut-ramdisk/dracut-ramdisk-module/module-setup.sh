#!/bin/bash
# dracut sources this file into its own shell: it must not change that shell's options
# dib-lint: disable=sete setu setpipefail
# The dracut module "dib-ramdisk" that dracut-ramdisk's post-install.d hook installs as
# /usr/lib/dracut/modules.d/90dib-ramdisk: it puts the ramdisk init (assembled from the
# elements' init.d fragments) into the initramfs and runs it from the pre-mount hook,
# once udev has settled and the network (rd.neednet=1) is up.
# dracut sources this file and calls the functions below; moddir is set by dracut.

# only when asked for (dracut --add dib-ramdisk)
check() {
    return 255
}

depends() {
    # the init and its fragments are bash scripts; the network comes up before them
    echo bash network
    return 0
}

install() {
    # shellcheck disable=SC2154 # moddir is set by dracut
    inst_script "$moddir/dib-ramdisk-init" /sbin/dib-ramdisk-init
    inst_hook pre-mount 50 "$moddir/dib-ramdisk-hook.sh"
}
