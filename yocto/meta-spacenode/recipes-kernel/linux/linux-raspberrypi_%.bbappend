# TPM on SPI, CAN with ISO-TP, the BCM2835 watchdog (files/spacenode.cfg).
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI:append = " file://spacenode.cfg"
