//! What the other commands need, checked before their first step and
//! installed when missing, saying so:
//!
//! - the Rust targets and components of `rust-toolchain.toml`, added with
//!   `rustup` to the toolchain this xtask runs under (rustup installs the
//!   targets of a toolchain file only when it installs the toolchain itself,
//!   not when the pinned version is already there as the machine's stable);
//! - QEMU (`qemu-system-riscv64`) and the other Debian tools the tests use.
//!   Installing never removes a package (`apt-get --no-remove`). When
//!   Debian's QEMU 7.2 would replace a newer package the machine has (a
//!   `qemu-utils` 10 from backports conflicts with `qemu-system-common` 7.2),
//!   the system is left alone and Debian's QEMU packages are unpacked into
//!   `target/tools/qemu/` instead, their shared libraries installed as usual.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The targets `rust-toolchain.toml` lists (kept equal by a unit test).
pub const TARGETS: &[&str] = &["riscv64gc-unknown-none-elf", "x86_64-unknown-none"];
/// The components `rust-toolchain.toml` lists, with a binary each provides.
const COMPONENTS: &[(&str, &str)] = &[("rustfmt", "rustfmt"), ("clippy", "cargo-clippy")];

/// The QEMU binary the riscv64 kernel needs.
const QEMU: &str = "qemu-system-riscv64";
/// The Debian/Ubuntu package that ships it.
const QEMU_PACKAGE: &str = "qemu-system-misc";
/// QEMU's firmware and data files (OpenSBI for `-bios default`).
const QEMU_DATA_PACKAGE: &str = "qemu-system-data";

/// Debian tools the tests run, by the binary that shows they are there.
pub const TOOLS: &[Tool] = &[];

/// A program from a Debian package.
#[derive(Debug)]
pub struct Tool {
    /// A binary (in `PATH`) or an absolute path the package installs.
    pub probe: &'static str,
    /// The Debian/Ubuntu package.
    pub package: &'static str,
    /// What needs it, for the messages.
    pub why: &'static str,
}

/// The toolchain this xtask was started from: `cargo xtask` runs under the
/// toolchain of `rust-toolchain.toml`, and cargo passes its own path in `CARGO`.
struct Toolchain {
    /// `…/toolchains/<name>/bin`.
    bin: PathBuf,
    /// `<name>`, as rustup knows it (`1.95.0-x86_64-unknown-linux-gnu`).
    name: Option<String>,
}

impl Toolchain {
    fn current() -> Toolchain {
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .and_then(|p| p.canonicalize().ok());
        let bin = cargo
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let name = bin
            .parent()
            .filter(|dir| dir.parent().is_some_and(|p| p.ends_with("toolchains")))
            .and_then(|dir| dir.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        Toolchain { bin, name }
    }

    fn rustc(&self) -> PathBuf {
        let rustc = self.bin.join("rustc");
        if rustc.is_file() {
            rustc
        } else {
            PathBuf::from("rustc")
        }
    }

    /// Whether the standard library for `target` is installed: its
    /// `target-libdir` holds a `libcore`.
    fn has_target(&self, target: &str) -> bool {
        let Ok(out) = Command::new(self.rustc())
            .args(["--print", "target-libdir", "--target", target])
            .stderr(Stdio::null())
            .output()
        else {
            return false;
        };
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        out.status.success()
            && std::fs::read_dir(&dir).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("libcore-") && name.ends_with(".rlib")
                })
            })
    }

    fn has_component_binary(&self, binary: &str) -> bool {
        self.bin.join(binary).is_file()
    }

    /// `rustup <args…> --toolchain <this one>`, echoed.
    fn rustup(&self, args: &[&str]) -> Result<(), String> {
        let mut all: Vec<&str> = args.to_vec();
        if let Some(name) = &self.name {
            all.extend(["--toolchain", name]);
        }
        eprintln!("+ rustup {}", all.join(" "));
        let status = Command::new("rustup").args(&all).status().map_err(|e| {
            format!(
                "cannot run rustup ({e}): install the Rust targets {} and the components \
                 rustfmt and clippy for this toolchain by hand",
                TARGETS.join(", ")
            )
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("rustup {} failed ({status})", all.join(" ")))
        }
    }
}

/// Adds the missing ones of `targets` and, if `components`, of rustfmt and
/// clippy, to the running toolchain.
pub fn rust(targets: &[&str], components: bool) -> Result<(), String> {
    let tc = Toolchain::current();
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !tc.has_target(t))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask: the Rust target{} {} {} missing from the toolchain{}: adding {} with rustup",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            if missing.len() > 1 { "are" } else { "is" },
            tc.name
                .as_deref()
                .map(|n| format!(" {n}"))
                .unwrap_or_default(),
            if missing.len() > 1 { "them" } else { "it" },
        );
        let mut args = vec!["target", "add"];
        args.extend(&missing);
        tc.rustup(&args)?;
        if let Some(t) = missing.iter().find(|t| !tc.has_target(t)) {
            return Err(format!("the Rust target {t} is still missing after rustup"));
        }
    }
    if components {
        for (component, binary) in COMPONENTS {
            if !tc.has_component_binary(binary) {
                eprintln!("xtask: the {component} component is missing: adding it with rustup");
                tc.rustup(&["component", "add", component])?;
            }
        }
    }
    Ok(())
}

/// The `rust-version` of the core (its minimum supported Rust), from
/// `core/Cargo.toml`.
pub fn msrv() -> Result<String, String> {
    let path = crate::repo_root().join("core/Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("rust-version"))
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no rust-version", path.display()))
}

/// Installs the toolchain `version` (minimal profile) with `targets` unless
/// rustup has it; `false` (with a line saying why) when rustup is missing.
pub fn toolchain(version: &str, targets: &[&str]) -> Result<bool, String> {
    let Ok(out) = Command::new("rustup").args(["toolchain", "list"]).output() else {
        eprintln!("xtask: no rustup: the Rust {version} checks are skipped");
        return Ok(false);
    };
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with(&format!("{version}-")));
    let has_targets = listed
        && Command::new("rustup")
            .args(["target", "list", "--installed", "--toolchain", version])
            .output()
            .is_ok_and(|o| {
                let installed = String::from_utf8_lossy(&o.stdout).into_owned();
                targets.iter().all(|t| installed.lines().any(|l| l == *t))
            });
    if !has_targets {
        eprintln!(
            "xtask: Rust {version} (the core's rust-version) is needed for its check: installing it"
        );
        let mut args = vec!["toolchain", "install", version, "--profile", "minimal"];
        for t in targets {
            args.extend(["--target", t]);
        }
        eprintln!("+ rustup {}", args.join(" "));
        let status = Command::new("rustup")
            .args(&args)
            .status()
            .map_err(|e| format!("cannot run rustup: {e}"))?;
        if !status.success() {
            return Err(format!("rustup {} failed ({status})", args.join(" ")));
        }
    }
    Ok(true)
}

/// Whether rustup has a toolchain named `name` (e.g. `nightly`).
pub fn toolchain_present(name: &str) -> bool {
    Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with(&format!("{name}-")))
        })
}

/// How to start QEMU: its binary and, for an unpacked copy, its data folder.
#[derive(Debug, Clone)]
pub struct Qemu {
    program: PathBuf,
    data_dir: Option<PathBuf>,
}

impl Qemu {
    /// A `Command` for this QEMU (`-L DIR` first for an unpacked copy).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some(dir) = &self.data_dir {
            cmd.arg("-L").arg(dir);
        }
        cmd
    }

    /// The binary, for messages.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// Where an unpacked QEMU lives.
fn local_qemu_root() -> PathBuf {
    crate::repo_root().join("target/tools/qemu")
}

fn local_qemu() -> Option<Qemu> {
    let root = local_qemu_root();
    let program = root.join("usr/bin").join(QEMU);
    let data_dir = root.join("usr/share/qemu");
    (program.is_file() && data_dir.is_dir()).then_some(Qemu {
        program,
        data_dir: Some(data_dir),
    })
}

/// Finds QEMU (in `PATH`, then an unpacked copy) or installs it.
pub fn qemu() -> Result<Qemu, String> {
    if let Some(program) = find_in_path(QEMU) {
        return Ok(Qemu {
            program,
            data_dir: None,
        });
    }
    if let Some(q) = local_qemu() {
        return Ok(q);
    }
    install_qemu(false)
}

/// `cargo xtask setup --local-qemu` / the automatic install: apt-get when it
/// removes nothing, else (or when `local`) an unpacked copy.
pub fn install_qemu(local: bool) -> Result<Qemu, String> {
    let apt = Apt::here().ok_or_else(|| {
        format!(
            "{QEMU} not found: install the `{QEMU_PACKAGE}` package \
             (Debian/Ubuntu: sudo apt-get install --no-install-recommends {QEMU_PACKAGE})"
        )
    })?;
    apt.update()?;
    if !local {
        let removed = apt.would_remove(&[QEMU_PACKAGE])?;
        if removed.is_empty() {
            apt.install(&[QEMU_PACKAGE])?;
            return find_in_path(QEMU)
                .map(|program| Qemu {
                    program,
                    data_dir: None,
                })
                .ok_or_else(|| format!("{QEMU} still missing after installing {QEMU_PACKAGE}"));
        }
        eprintln!(
            "xtask: installing {QEMU_PACKAGE} would remove {}; leaving the system's packages \
             alone and unpacking QEMU into {} instead (`cargo xtask setup --local-qemu`)",
            removed.join(", "),
            local_qemu_root().display()
        );
    }
    apt.unpack_qemu()
}

/// Installs the Debian packages of [`TOOLS`] that are missing.
pub fn tools() -> Result<(), String> {
    let missing: Vec<&Tool> = TOOLS.iter().filter(|t| !t.present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    for t in &missing {
        eprintln!(
            "xtask: {} (package {}, for {}) is missing",
            t.probe, t.package, t.why
        );
    }
    let apt = Apt::here().ok_or_else(|| {
        format!(
            "install the Debian/Ubuntu packages {} (sudo apt-get install --no-install-recommends {})",
            packages.join(", "),
            packages.join(" ")
        )
    })?;
    apt.update()?;
    let removed = apt.would_remove(&packages)?;
    if !removed.is_empty() {
        return Err(format!(
            "installing {} would remove {}: not done; install them by hand",
            packages.join(" "),
            removed.join(", ")
        ));
    }
    apt.install(&packages)?;
    match missing.iter().find(|t| !t.present()) {
        Some(t) => Err(format!(
            "{} still missing after installing {}",
            t.probe, t.package
        )),
        None => Ok(()),
    }
}

impl Tool {
    fn present(&self) -> bool {
        if self.probe.starts_with('/') {
            Path::new(self.probe).exists()
        } else {
            find_in_path(self.probe).is_some()
        }
    }
}

/// `apt-get` as root (directly or through `sudo`) on Debian/Ubuntu.
struct Apt {
    sudo: bool,
}

impl Apt {
    fn here() -> Option<Apt> {
        if !Path::new("/etc/debian_version").exists() || find_in_path("apt-get").is_none() {
            return None;
        }
        if is_root() {
            Some(Apt { sudo: false })
        } else if find_in_path("sudo").is_some()
            && Command::new("sudo")
                .args(["-n", "true"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            Some(Apt { sudo: true })
        } else {
            None
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = if self.sudo {
            let mut c = Command::new("sudo");
            c.arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    fn run(&self, program: &str, args: &[&str], dir: Option<&Path>) -> Result<(), String> {
        eprintln!(
            "+ {}{program} {}",
            if self.sudo { "sudo " } else { "" },
            args.join(" ")
        );
        let mut cmd = self.command(program);
        cmd.args(args);
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{program} {} failed ({status})", args.join(" ")))
        }
    }

    fn update(&self) -> Result<(), String> {
        self.run("apt-get", &["update", "-qq"], None)
    }

    /// `apt-get install` that never removes or upgrades what is installed.
    fn install(&self, packages: &[&str]) -> Result<(), String> {
        let mut args = vec![
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "--no-remove",
            "--no-upgrade",
        ];
        args.extend(packages);
        self.run("apt-get", &args, None)
    }

    /// The packages (with versions) `apt-get install packages` would remove.
    fn would_remove(&self, packages: &[&str]) -> Result<Vec<String>, String> {
        let out = Command::new("apt-get")
            .args(["install", "-s", "--no-install-recommends", "--no-upgrade"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "apt-get cannot install {}: {}",
                packages.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(removals(&text))
    }

    /// Installs QEMU's shared libraries (never removing anything), and unpacks
    /// Debian's QEMU and its data package into `target/tools/qemu/`.
    fn unpack_qemu(&self) -> Result<Qemu, String> {
        let libs = library_depends(QEMU_PACKAGE)?;
        let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
        let removed = self.would_remove(&libs)?;
        if !removed.is_empty() {
            return Err(format!(
                "installing QEMU's libraries would remove {}: not done; install \
                 {QEMU_PACKAGE} by hand",
                removed.join(", ")
            ));
        }
        self.install(&libs)?;
        let root = local_qemu_root();
        let debs = root.with_file_name("qemu-debs");
        for dir in [&root, &debs] {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        // `apt-get download` fetches as the unprivileged `_apt` user when it
        // can write the folder (else it warns and fetches as root).
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&debs, std::fs::Permissions::from_mode(0o777));
        }
        eprintln!(
            "+ (cd {}; apt-get download {QEMU_PACKAGE} {QEMU_DATA_PACKAGE})",
            debs.display()
        );
        let status = Command::new("apt-get")
            .args(["download", "-qq", QEMU_PACKAGE, QEMU_DATA_PACKAGE])
            .current_dir(&debs)
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if !status.success() {
            return Err(format!("apt-get download {QEMU_PACKAGE} failed ({status})"));
        }
        let mut unpacked = 0;
        for entry in std::fs::read_dir(&debs).map_err(|e| format!("{}: {e}", debs.display()))? {
            let deb = entry.map_err(|e| e.to_string())?.path();
            if deb.extension().is_some_and(|x| x == "deb") {
                eprintln!("+ dpkg-deb -x {} {}", deb.display(), root.display());
                let status = Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&deb)
                    .arg(&root)
                    .status()
                    .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
                if !status.success() {
                    return Err(format!("dpkg-deb -x {} failed ({status})", deb.display()));
                }
                unpacked += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&debs);
        let qemu = local_qemu().ok_or_else(|| {
            format!(
                "unpacked {unpacked} packages but {} has no {QEMU}",
                root.display()
            )
        })?;
        let ok = qemu
            .command()
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "{} --version failed (a shared library missing?)",
                qemu.program.display()
            ));
        }
        eprintln!("xtask: QEMU unpacked into {}", root.display());
        Ok(qemu)
    }
}

/// The `Remv` lines of an `apt-get install -s` transcript: `name version`.
fn removals(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .map(|rest| rest.replace(['[', ']'], ""))
        .collect()
}

/// The first alternative of every `Depends` entry of `package` that is not
/// another QEMU package (those are unpacked, not installed).
fn library_depends(package: &str) -> Result<Vec<String>, String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", package])
        .output()
        .map_err(|e| format!("cannot run apt-cache: {e}"))?;
    if !out.status.success() {
        return Err(format!("apt-cache show {package} failed"));
    }
    Ok(depends_of(&String::from_utf8_lossy(&out.stdout)))
}

fn depends_of(control: &str) -> Vec<String> {
    control
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .unwrap_or("")
        .split(',')
        .filter_map(|alt| alt.split('|').next())
        .filter_map(|dep| dep.split_whitespace().next())
        .filter(|name| !name.starts_with("qemu-"))
        .map(str::to_string)
        .collect()
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_those_of_the_toolchain_file() {
        let file = std::fs::read_to_string(crate::repo_root().join("rust-toolchain.toml"))
            .expect("rust-toolchain.toml");
        let line = file
            .lines()
            .find(|l| l.starts_with("targets"))
            .expect("a targets line");
        let listed: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(listed, TARGETS);
        for (component, _) in COMPONENTS {
            assert!(file.contains(&format!("\"{component}\"")), "{component}");
        }
    }

    #[test]
    fn removals_are_read_from_a_simulation() {
        let sim = "Reading package lists...\n\
                   Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
                   Inst libfdt1 (1.6.1-4+b1 Debian:12.15/oldstable [amd64])\n";
        assert_eq!(removals(sim), ["qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1"]);
        assert!(removals("Inst libfdt1 (1.6.1-4+b1 Debian [amd64])\n").is_empty());
    }

    #[test]
    fn library_depends_skip_qemu_packages_and_alternatives() {
        let control = "Package: qemu-system-misc\n\
                       Depends: libaio1 (>= 0.3.93), libc6 (>= 2.34), libfoo | libbar, \
                       qemu-system-common (= 1:7.2+dfsg-7), qemu-system-data (>> 1:7.2+dfsg~)\n\
                       Recommends: qemu-utils\n";
        assert_eq!(depends_of(control), ["libaio1", "libc6", "libfoo"]);
    }
}
