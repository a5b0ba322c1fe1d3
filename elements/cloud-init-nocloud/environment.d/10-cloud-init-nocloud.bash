# cloud-init-nocloud: only the on-disk NoCloud datasource
export DIB_CLOUD_INIT_DATASOURCES=NoCloud
