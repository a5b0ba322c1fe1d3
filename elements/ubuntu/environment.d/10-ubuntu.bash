# Ubuntu from its published cloud image (see README.rst)
export DIB_RELEASE=${DIB_RELEASE:-noble}
export DIB_CLOUD_INIT_DATASOURCES=${DIB_CLOUD_INIT_DATASOURCES:-Ec2}
export DIB_LOCAL_IMAGE=${DIB_LOCAL_IMAGE:-}
