# ironic-python-agent install settings (see the ironic-agent element's README.rst)
export DIB_IPA_PACKAGE=${DIB_IPA_PACKAGE:-ironic-python-agent}
export DIB_IPA_VENV=${DIB_IPA_VENV:-/opt/ironic-python-agent}
