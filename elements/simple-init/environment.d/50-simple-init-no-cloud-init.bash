# glean does cloud-init's work and cloud-init is removed (package-installs.yaml): should
# its configuration be written all the same, it is told to probe no datasource.
export DIB_CLOUD_INIT_DATASOURCES=None
