SUMMARY = "spacenode flight image for the Raspberry Pi CM4 payload computer"
DESCRIPTION = "The payload computer's root file system: systemd, the TPM \
               stack, RAUC and spacenoded, read-only, with no package manager, no ssh and \
               no login. The wic image adds the boot, second root and data partitions."
HOMEPAGE = "https://spacenode.invalid/"
BUGTRACKER = "https://spacenode.invalid/issues"
SECTION = "images"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

inherit core-image

IMAGE_FEATURES = "read-only-rootfs"

IMAGE_INSTALL = "packagegroup-core-boot \
                 spacenoded \
                 spacenode-system \
                 rauc \
                 rauc-mark-good \
                 u-boot-env \
                 kernel-image \
                 kernel-module-mcp251x \
                 tpm2-tss \
                 tpm2-tools \
                 ${SPACENODE_IMAGE_EXTRA_INSTALL} \
"
# Debug tools of the -dev image (spacenode-cm4-dev.yml); empty for flight.
SPACENODE_IMAGE_EXTRA_INSTALL ?= ""

IMAGE_LINGUAS = ""

# ext4 is the RAUC slot image (spacenode-bundle) and wic the eMMC image
# (boot, root A, root B, data: wic/spacenode-cm4.wks); bmap for bmaptool.
IMAGE_FSTYPES = "ext4 wic.bz2 wic.bmap"
WKS_FILE = "spacenode-cm4.wks"
# Room for an update to grow; the slot partitions are 1536 MiB.
IMAGE_ROOTFS_EXTRA_SPACE = "65536"

# No default passwords and no console login in the flight image: any of
# these features is refused unless the -dev kas file built it
# (SPACENODE_DEV_IMAGE = "1").
SPACENODE_DEV_IMAGE ?= "0"
SPACENODE_LOGIN_FEATURES = "allow-empty-password empty-root-password allow-root-login \
                            ssh-server-dropbear ssh-server-openssh package-management"

python spacenode_refuse_login() {
    if d.getVar('SPACENODE_DEV_IMAGE') != '1':
        features = set((d.getVar('IMAGE_FEATURES') or '').split() + (d.getVar('EXTRA_IMAGE_FEATURES') or '').split())
        refused = sorted(features & set(d.getVar('SPACENODE_LOGIN_FEATURES').split()))
        if refused:
            bb.fatal("spacenode-image: %s in a flight image (only the -dev kas file may add them)" % ' '.join(refused))
}
spacenode_refuse_login[doc] = "Fails the flight image build if it carries a login or package feature"
do_rootfs[prefuncs] += "spacenode_refuse_login"
