//! The virtual flight board: the image that `tests/vm/build-image.sh` made,
//! booted in QEMU (TCG) with the parts of the CM4 board that the daemon
//! meets: a TPM 2.0 (swtpm behind `tpm-tis`, as the SLB9670 is TIS over
//! SPI), a hardware watchdog (`i6300esb`, petted by systemd's
//! `RuntimeWatchdogSec`, or by the daemon itself in the `--watchdog device`
//! image; when it fires QEMU resets the guest and keeps running, as a board
//! reboots on a watchdog reset), a CAN controller (`kvaser_pci` on a QEMU CAN bus)
//! and two UARTs: ttyS0 is the console, written to a file per power cycle,
//! and ttyS1 is the link, bridged to a host pty that the ground opens.
//!
//! A power cut is SIGKILL of QEMU and of swtpm: the guest's page cache and
//! everything in flight is gone; the disk image and the TPM's NV state keep
//! what had reached them, as on a board that loses power.
//!
//! This module must never leave a QEMU or swtpm behind: both are killed on
//! drop, and both are started under `setpriv --pdeathsig KILL` so that they
//! die with the runner even if it is killed itself.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::board::{Board, BoardError, read_from};
use super::disk::{self, DiskReport};
use super::scenario::Capability;

/// How long QEMU may take to print the link pty's name.
const QEMU_START: Duration = Duration::from_secs(20);
/// How long swtpm may take to create its control socket.
const SWTPM_START: Duration = Duration::from_secs(10);
/// Kernel command line if the image directory has no `cmdline` file.
const DEFAULT_CMDLINE: &str = "console=ttyS0,115200 root=/dev/vda ro rootfstype=ext4 panic=10 \
                               systemd.show_status=1 systemd.journald.forward_to_console=1";

/// Where the board's files are and how big the machine is.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The image directory of `tests/vm/build-image.sh` (disk.img, vmlinuz,
    /// initrd.img, cmdline). The TPM state lives in `tpm/` beside them.
    pub image_dir: PathBuf,
    /// Logs (console-N.log, qemu-N.log, swtpm.log) and sockets.
    pub work_dir: PathBuf,
    /// Guest memory.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// QEMU accelerator: `tcg` (CI has no KVM) or `kvm`.
    pub accel: String,
    /// The link's baud rate in the guest's config.
    pub baud: u32,
}

impl VmOptions {
    /// Defaults for an image directory: 512 MiB, one CPU, TCG, 115200 Bd,
    /// logs in `IMAGE_DIR/run`.
    #[must_use]
    pub fn new(image_dir: &Path) -> Self {
        Self {
            image_dir: image_dir.to_path_buf(),
            work_dir: image_dir.join("run"),
            memory_mib: 512,
            cpus: 1,
            accel: "tcg".into(),
            baud: 115_200,
        }
    }

    fn disk(&self) -> PathBuf {
        self.image_dir.join("disk.img")
    }

    fn swtpm_socket(&self) -> PathBuf {
        self.work_dir.join("swtpm.sock")
    }

    /// The console log of power cycle `boot`.
    #[must_use]
    pub fn console_log(&self, boot: u32) -> PathBuf {
        self.work_dir.join(format!("console-{boot}.log"))
    }

    /// QEMU's own output of power cycle `boot`.
    #[must_use]
    pub fn qemu_log(&self, boot: u32) -> PathBuf {
        self.work_dir.join(format!("qemu-{boot}.log"))
    }
}

/// QEMU's arguments for power cycle `boot` (pure: tests check them).
#[must_use]
pub fn qemu_args(opts: &VmOptions, cmdline: &str, boot: u32) -> Vec<String> {
    let p = |path: PathBuf| path.to_string_lossy().into_owned();
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_string()));
    push(&["-name", "spacenode-board"]);
    push(&["-machine", &format!("q35,accel={}", opts.accel)]);
    push(&["-cpu", "max"]);
    push(&["-smp", &opts.cpus.to_string()]);
    push(&["-m", &format!("{}M", opts.memory_mib)]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-rtc", "base=utc,clock=host"]);
    push(&["-kernel", &p(opts.image_dir.join("vmlinuz"))]);
    push(&["-initrd", &p(opts.image_dir.join("initrd.img"))]);
    push(&["-append", cmdline]);
    push(&[
        "-drive",
        &format!(
            "file={},format=raw,if=virtio,cache=writeback",
            p(opts.disk())
        ),
    ]);
    // ttyS0: the console, one file per power cycle.
    push(&[
        "-chardev",
        &format!("file,id=console,path={}", p(opts.console_log(boot))),
        "-serial",
        "chardev:console",
    ]);
    // ttyS1: the link, bridged to a host pty.
    push(&["-chardev", "pty,id=link", "-serial", "chardev:link"]);
    push(&[
        "-chardev",
        &format!("socket,id=chrtpm,path={}", p(opts.swtpm_socket())),
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        "tpm-tis,tpmdev=tpm0",
    ]);
    // A watchdog expiry and a guest reboot reset the machine; QEMU keeps
    // running (never -no-reboot), so the console file, the link pty and the
    // TPM stay, as on a board that reboots by itself.
    push(&[
        "-device",
        "i6300esb",
        "-action",
        "reboot=reset,watchdog=reset",
    ]);
    push(&[
        "-object",
        "can-bus,id=canbus0",
        "-device",
        "kvaser_pci,canbus=canbus0",
    ]);
    push(&["-nic", "none"]);
    a
}

/// The host pty QEMU bridged the chardev `label` to, from its output line
/// `char device redirected to /dev/pts/N (label LABEL)`.
#[must_use]
pub fn parse_pty(qemu_output: &str, label: &str) -> Option<PathBuf> {
    let tail = format!("(label {label})");
    qemu_output.lines().find_map(|line| {
        let rest = line.split("char device redirected to ").nth(1)?;
        let (path, after) = rest.split_once(' ')?;
        (after.trim() == tail).then(|| PathBuf::from(path))
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = read_from(path, 0).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `program` so that it is killed when this process dies.
fn spawn_bound(program: &str, args: &[String], log: &Path) -> Result<Child, BoardError> {
    let out = File::create(log).map_err(|source| BoardError::Io {
        path: log.to_path_buf(),
        source,
    })?;
    let err = out.try_clone().map_err(|source| BoardError::Io {
        path: log.to_path_buf(),
        source,
    })?;
    let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--pdeathsig", "KILL", "--", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| BoardError::Spawn {
            what: program.to_string(),
            source,
        })
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The virtual board.
#[derive(Debug)]
pub struct VirtualBoard {
    opts: VmOptions,
    cmdline: String,
    qemu: Option<Child>,
    swtpm: Option<Child>,
    boot: u32,
    pty: Option<PathBuf>,
    powered_on_at: Option<Instant>,
    facts: ImageFacts,
}

/// What the image's config enables, from the `build.json` that
/// `tests/vm/build-image.sh` writes (absent: nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ImageFacts {
    /// `health.test_hooks = true`.
    test_hooks: bool,
    /// `--watchdog device`: the daemon holds the i6300esb.
    device_watchdog: bool,
}

impl ImageFacts {
    fn read(image_dir: &Path) -> Self {
        let Some(v) = std::fs::read(image_dir.join("build.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            return Self::default();
        };
        Self {
            test_hooks: v
                .get("test_hooks")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            device_watchdog: v.get("watchdog").and_then(serde_json::Value::as_str)
                == Some("device"),
        }
    }
}

impl VirtualBoard {
    /// A board for the image in `opts.image_dir` (checked, not started).
    ///
    /// # Errors
    /// [`BoardError`] if the image is incomplete or the work directory
    /// cannot be made.
    pub fn new(opts: VmOptions) -> Result<Self, BoardError> {
        for f in ["disk.img", "vmlinuz", "initrd.img"] {
            let path = opts.image_dir.join(f);
            if !path.exists() {
                return Err(BoardError::Failed {
                    what: "virtual board image".into(),
                    detail: format!(
                        "{} is missing: build it with tests/vm/build-image.sh",
                        path.display()
                    ),
                });
            }
        }
        for dir in [opts.work_dir.clone(), opts.image_dir.join("tpm")] {
            std::fs::create_dir_all(&dir).map_err(|source| BoardError::Io { path: dir, source })?;
        }
        let cmdline = std::fs::read_to_string(opts.image_dir.join("cmdline"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| DEFAULT_CMDLINE.to_string());
        let facts = ImageFacts::read(&opts.image_dir);
        Ok(Self {
            opts,
            cmdline,
            qemu: None,
            swtpm: None,
            boot: 0,
            pty: None,
            powered_on_at: None,
            facts,
        })
    }

    /// The console log of the current power cycle.
    #[must_use]
    pub fn console_log(&self) -> PathBuf {
        self.opts.console_log(self.boot)
    }

    /// Power cycles so far.
    #[must_use]
    pub fn boots(&self) -> u32 {
        self.boot
    }

    fn start_swtpm(&mut self) -> Result<(), BoardError> {
        let sock = self.opts.swtpm_socket();
        let _ = std::fs::remove_file(&sock);
        let log = self.opts.work_dir.join("swtpm.log");
        let state = self.opts.image_dir.join("tpm");
        let args: Vec<String> = vec![
            "socket".into(),
            "--tpm2".into(),
            "--tpmstate".into(),
            format!("dir={}", state.display()),
            "--ctrl".into(),
            format!("type=unixio,path={}", sock.display()),
            // Exit when QEMU's connection drops: no stray swtpm.
            "--terminate".into(),
        ];
        let mut child = spawn_bound("swtpm", &args, &log)?;
        let deadline = Instant::now() + SWTPM_START;
        while !sock.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(BoardError::Failed {
                    what: "swtpm".into(),
                    detail: format!("exited with {status}: {}", tail(&log, 10)),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BoardError::Failed {
                    what: "swtpm".into(),
                    detail: format!("no control socket after {SWTPM_START:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.swtpm = Some(child);
        Ok(())
    }
}

impl Board for VirtualBoard {
    fn describe(&self) -> String {
        format!(
            "virtual board {} (QEMU {}, {} CPU, {} MiB)",
            self.opts.image_dir.display(),
            self.opts.accel,
            self.opts.cpus,
            self.opts.memory_mib
        )
    }

    fn capabilities(&self) -> BTreeSet<Capability> {
        let mut caps: BTreeSet<Capability> =
            [Capability::Console, Capability::Power, Capability::Disk]
                .into_iter()
                .collect();
        if self.facts.test_hooks {
            caps.insert(Capability::TestHooks);
        }
        if self.facts.device_watchdog {
            caps.insert(Capability::DeviceWatchdog);
        }
        caps
    }

    fn power_on(&mut self) -> Result<(), BoardError> {
        if self.qemu.is_some() {
            return Err(BoardError::PowerState {
                state: "off",
                what: "power it on",
            });
        }
        self.boot += 1;
        self.powered_on_at = Some(Instant::now());
        self.start_swtpm()?;
        let log = self.opts.qemu_log(self.boot);
        let args = qemu_args(&self.opts, &self.cmdline, self.boot);
        let mut child = match spawn_bound("qemu-system-x86_64", &args, &log) {
            Ok(c) => c,
            Err(e) => {
                stop(&mut self.swtpm);
                return Err(e);
            }
        };
        let deadline = Instant::now() + QEMU_START;
        let pty = loop {
            if let Some(p) = parse_pty(&read_from(&log, 0)?, "link") {
                break p;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                stop(&mut self.swtpm);
                return Err(BoardError::Failed {
                    what: "qemu-system-x86_64".into(),
                    detail: format!(
                        "{} without a link pty: {}",
                        exited.map_or("timed out".into(), |s| format!("exited with {s}")),
                        tail(&log, 10)
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.pty = Some(pty);
        self.qemu = Some(child);
        Ok(())
    }

    fn power_cut(&mut self) -> Result<(), BoardError> {
        if self.qemu.is_none() {
            return Err(BoardError::PowerState {
                state: "on",
                what: "cut its power",
            });
        }
        stop(&mut self.qemu);
        stop(&mut self.swtpm);
        self.pty = None;
        Ok(())
    }

    fn is_on(&mut self) -> bool {
        match self.qemu.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                // QEMU died by itself: the board is off, swtpm follows.
                stop(&mut self.qemu);
                stop(&mut self.swtpm);
                self.pty = None;
                false
            }
            None => false,
        }
    }

    fn powered_on_at(&self) -> Option<Instant> {
        self.powered_on_at
    }

    fn link_port(&self) -> Result<PathBuf, BoardError> {
        self.pty.clone().ok_or(BoardError::PowerState {
            state: "on",
            what: "open its link",
        })
    }

    fn baud(&self) -> u32 {
        self.opts.baud
    }

    fn console(&self) -> Result<String, BoardError> {
        if self.boot == 0 {
            return Ok(String::new());
        }
        read_from(&self.console_log(), 0)
    }

    fn inspect_disk(&mut self, sqlite: &[String]) -> Result<DiskReport, BoardError> {
        if self.is_on() {
            return Err(BoardError::PowerState {
                state: "off",
                what: "inspect its disk",
            });
        }
        Ok(disk::inspect(
            &self.opts.disk(),
            &self.opts.work_dir.join("inspect"),
            sqlite,
        )?)
    }

    fn artifacts(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for b in 1..=self.boot {
            v.push(self.opts.console_log(b));
            v.push(self.opts.qemu_log(b));
        }
        v.push(self.opts.work_dir.join("swtpm.log"));
        v
    }
}

impl Drop for VirtualBoard {
    fn drop(&mut self) {
        stop(&mut self.qemu);
        stop(&mut self.swtpm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_gets_the_board_parts() {
        let opts = VmOptions::new(Path::new("/img"));
        let a = qemu_args(&opts, "console=ttyS0", 2).join(" ");
        for part in [
            "-machine q35,accel=tcg",
            "-kernel /img/vmlinuz",
            "-initrd /img/initrd.img",
            "file=/img/disk.img,format=raw,if=virtio",
            "file,id=console,path=/img/run/console-2.log",
            "-chardev pty,id=link -serial chardev:link",
            "socket,id=chrtpm,path=/img/run/swtpm.sock",
            "-device tpm-tis,tpmdev=tpm0",
            "-device i6300esb -action reboot=reset,watchdog=reset",
            "-object can-bus,id=canbus0 -device kvaser_pci,canbus=canbus0",
        ] {
            assert!(a.contains(part), "{part} not in {a}");
        }
        // The console is the first serial port, the link the second.
        let console = a.find("chardev:console").unwrap();
        let link = a.find("chardev:link").unwrap();
        assert!(console < link);
    }

    #[test]
    fn the_link_pty_is_found_by_label() {
        let out = "qemu: warning: x\nchar device redirected to /dev/pts/7 (label link)\n";
        assert_eq!(parse_pty(out, "link"), Some(PathBuf::from("/dev/pts/7")));
        assert_eq!(parse_pty(out, "console"), None);
        assert_eq!(parse_pty("", "link"), None);
    }

    #[test]
    fn the_image_says_what_its_config_enables() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ImageFacts::read(dir.path()), ImageFacts::default());
        std::fs::write(
            dir.path().join("build.json"),
            r#"{"watchdog": "device", "test_hooks": true, "admins": 2}"#,
        )
        .unwrap();
        assert_eq!(
            ImageFacts::read(dir.path()),
            ImageFacts {
                test_hooks: true,
                device_watchdog: true
            }
        );
        std::fs::write(dir.path().join("build.json"), r#"{"watchdog": "systemd"}"#).unwrap();
        assert_eq!(ImageFacts::read(dir.path()), ImageFacts::default());
    }

    #[test]
    fn an_incomplete_image_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let e = VirtualBoard::new(VmOptions::new(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("build-image.sh"), "{e}");
    }
}
