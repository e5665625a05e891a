# U-Boot's environment (boot order and counters) is read and written with
# libubootenv's fw_printenv/fw_setenv (fw_env.config: /boot/uboot.env).
RDEPENDS:${PN}:append:spacenode = " libubootenv-bin"
