"""The built-in block-device plugins (registered in setup.cfg's dibpy.block_device.plugin)."""
