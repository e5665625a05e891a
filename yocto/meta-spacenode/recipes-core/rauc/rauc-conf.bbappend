# RAUC's system.conf is the repository's systemd/rauc/system.conf (one copy,
# also installed by the virtual board); the keyring is the DEVELOPMENT CA
# (files/dev-keys/README.md) unless a flight build points RAUC_KEYRING_FILE
# and RAUC_KEYRING_URI at the flight CA.
FILESEXTRAPATHS:prepend:spacenode := "${SPACENODE_REPO}/systemd/rauc:${THISDIR}/files/dev-keys:"
