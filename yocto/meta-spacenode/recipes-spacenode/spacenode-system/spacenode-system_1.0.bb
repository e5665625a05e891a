SUMMARY = "spacenode payload computer system configuration"
DESCRIPTION = "The board-level files of the spacenode flight image: the \
               hardware watchdog and journald settings shared with the virtual board, the \
               data partition layout and mounts, the CAN bus bit rate and the rule that a \
               boot is good only once spacenoded is ready."
HOMEPAGE = "https://spacenode.invalid/"
BUGTRACKER = "https://spacenode.invalid/issues"
SECTION = "base"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# watchdog.conf and journald.conf.d/spacenode.conf are the repository's
# systemd/ files (one copy, also installed by tests/vm/build-image.sh); the
# rest is the flight board's own.
FILESEXTRAPATHS:prepend := "${SPACENODE_REPO}/systemd:"

SRC_URI = "file://system.conf.d/watchdog.conf \
           file://journald.conf.d/spacenode.conf \
           file://spacenode-data.conf \
           file://spacenode-data-layout.service \
           file://80-can0.network \
           file://boot-complete-spacenoded.conf \
"

S = "${UNPACKDIR}"

# The payload CAN bus bit rate (systemd-networkd, 80-can0.network).
SPACENODE_CAN_BITRATE ?= "500000"

inherit allarch systemd features_check

REQUIRED_DISTRO_FEATURES = "systemd"

SYSTEMD_SERVICE:${PN} = "spacenode-data-layout.service"
SYSTEMD_AUTO_ENABLE:${PN} = "disable"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${sysconfdir}/systemd/system.conf.d
    install -m 0644 ${S}/system.conf.d/watchdog.conf ${D}${sysconfdir}/systemd/system.conf.d/watchdog.conf
    install -d ${D}${sysconfdir}/systemd/journald.conf.d
    install -m 0644 ${S}/journald.conf.d/spacenode.conf ${D}${sysconfdir}/systemd/journald.conf.d/spacenode.conf
    install -d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/spacenode-data.conf ${D}${nonarch_libdir}/tmpfiles.d/spacenode-data.conf
    install -d ${D}${systemd_system_unitdir}/boot-complete.target.d
    install -m 0644 ${S}/spacenode-data-layout.service ${D}${systemd_system_unitdir}/spacenode-data-layout.service
    install -m 0644 ${S}/boot-complete-spacenoded.conf ${D}${systemd_system_unitdir}/boot-complete.target.d/spacenoded.conf
    install -d ${D}${nonarch_libdir}/systemd/network
    sed -e 's/@CAN_BITRATE@/${SPACENODE_CAN_BITRATE}/' ${S}/80-can0.network \
        > ${D}${nonarch_libdir}/systemd/network/80-can0.network
    chmod 0644 ${D}${nonarch_libdir}/systemd/network/80-can0.network
    # Mount points on the read-only root (fstab).
    install -d ${D}/data
}

FILES:${PN} += "/data \
                ${nonarch_libdir}/tmpfiles.d \
                ${nonarch_libdir}/systemd/network \
                ${systemd_system_unitdir}"

# The daemon's user and the journal's group must exist for tmpfiles; the
# watchdog and mounts need systemd itself; CAN needs systemd-networkd.
RDEPENDS:${PN} = "spacenoded systemd"
