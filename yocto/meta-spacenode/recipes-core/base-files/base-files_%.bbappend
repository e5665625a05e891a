# The payload computer's fstab: read-only root, boot, data partition and
# its bind mounts (the file says why each option is there).
FILESEXTRAPATHS:prepend:spacenode := "${THISDIR}/files:"
