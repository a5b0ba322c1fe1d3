"""The block-device layer: disk images as a validated graph of plugin nodes.

Public API (what the build pipeline calls)::

    from dibpy.blockdev import BlockDeviceParams, BlockDevice, load_config, config_source

    params = BlockDeviceParams(image_dir=..., mount_base=..., build_dir=...,
                               root_fs_type="ext4", root_label=None, image_size=nbytes,
                               root_fs_opts=[...], arch="amd64")
    text, origin = config_source(elements, arch, os.environ)
    config = load_config(text, params, origin=origin)   # raises MultiError with YAML paths
    bd = BlockDevice(config, params)
    with contextlib.ExitStack() as stack:
        bd.create(stack)              # every loop device / mount is on `stack` at once
        bd.root_mount                 # where / of the image is mounted (= mount_base)
        bd.getval("mount-points")     # also root-label, root-fstype, boot-label,
                                      # image-path, image-block-device(s)
        bd.write_fstab(etc_dir)       # etc_dir/fstab, LABEL= lines
        ...                           # fill the image through the mounts
        bd.umount()                   # orderly: FAT staged content copied in, fstrim,
                                      # umount, partx -d, losetup -d, wait for the kernel
    bd.image_path                     # the raw image, kept until bd.delete()

State (a JSON journal of acquired resources, written as each is made) lives in
``<build_dir>/states/block-device/`` so ``dib-block-device cleanup`` in another process
can tear down what a killed build left.  See doc/block-device.md for the config format.
"""

from dibpy.blockdev.config import BlockDeviceConfig, BlockDeviceConfigError, load_config
from dibpy.blockdev.device import GETVAL_SYMBOLS, BlockDevice
from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.source import FALLBACK_CONFIG, config_source

__all__ = [
    "FALLBACK_CONFIG",
    "GETVAL_SYMBOLS",
    "BlockDevice",
    "BlockDeviceConfig",
    "BlockDeviceConfigError",
    "BlockDeviceParams",
    "config_source",
    "load_config",
]
