# local-config: the image user that gets the build user's ssh keys
export DIB_LOCAL_CONFIG_USERNAME=${DIB_LOCAL_CONFIG_USERNAME:-root}
