# No SRC_URI: the bundle class takes spacenode-image's ext4 from the deploy
# directory (scripts/check-yocto-lint.sh: oelint.var.mandatoryvar.SRC_URI).
SUMMARY = "Signed RAUC update bundle of the spacenode flight image"
DESCRIPTION = "A verity-format RAUC bundle carrying the spacenode-image root \
               file system for the A/B slots of the CM4 (systemd/rauc/system.conf)."
HOMEPAGE = "https://spacenode.invalid/"
BUGTRACKER = "https://spacenode.invalid/issues"
SECTION = "base"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

inherit bundle

# verity: the bundle's payload is checked block by block against a signed
# dm-verity hash tree while it is installed, not just once at download.
RAUC_BUNDLE_FORMAT = "verity"
# Must equal [system] compatible= of systemd/rauc/system.conf.
RAUC_BUNDLE_COMPATIBLE = "spacenode-cm4"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "spacenode flight image"

RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "spacenode-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# DEVELOPMENT-ONLY signer (recipes-core/rauc/files/dev-keys/README.md). A
# flight build sets RAUC_KEY_FILE/RAUC_CERT_FILE (or a PKCS#11 URI) in its
# own configuration, never in git.
SPACENODE_DEV_KEYS = "${SPACENODE_LAYERDIR}/recipes-core/rauc/files/dev-keys"
RAUC_KEY_FILE ?= "${SPACENODE_DEV_KEYS}/development-1.key.pem"
RAUC_CERT_FILE ?= "${SPACENODE_DEV_KEYS}/development-1.cert.pem"
RAUC_KEYRING_FILE ?= "${SPACENODE_DEV_KEYS}/ca.cert.pem"
