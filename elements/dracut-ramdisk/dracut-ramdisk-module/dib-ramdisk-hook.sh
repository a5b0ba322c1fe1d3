#!/bin/bash
# dracut sources this file into its own shell: it must not change that shell's options
# dib-lint: disable=sete setu setpipefail
# dracut pre-mount hook of the dib-ramdisk module.  dracut sources its hooks, so the init
# runs as a process of its own: its "exit" or "set -e" cannot end dracut's boot, and it
# gets the console for its input and output.
bash /sbin/dib-ramdisk-init < /dev/console > /dev/console 2>&1 || warn "dib-ramdisk: the ramdisk init failed (exit status $?)"
