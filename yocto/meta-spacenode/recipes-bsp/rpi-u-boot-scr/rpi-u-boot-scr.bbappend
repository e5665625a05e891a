# The A/B boot script with a boot counter (files/boot.cmd.in) instead of
# meta-raspberrypi's single-root one; same placeholders, same mkimage step.
FILESEXTRAPATHS:prepend:spacenode := "${THISDIR}/files:"
