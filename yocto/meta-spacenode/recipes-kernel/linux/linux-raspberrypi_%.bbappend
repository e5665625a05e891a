# TPM on SPI, CAN with ISO-TP, the BCM2835 watchdog (files/spacenode.cfg).
FILESEXTRAPATHS:prepend:spacenode := "${THISDIR}/files:"
SRC_URI:append:spacenode = " file://spacenode.cfg"
