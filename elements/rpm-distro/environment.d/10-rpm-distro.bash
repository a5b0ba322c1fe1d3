# RPM-based distributions this library builds boot with systemd
export DIB_INIT_SYSTEM=${DIB_INIT_SYSTEM:-systemd}
