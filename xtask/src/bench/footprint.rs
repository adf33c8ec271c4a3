//! Section 3, footprint: two tiny riscv64 kernels (`bench/footprint/`) that
//! differ only in whether a `Kmod` is used; `llvm-size` of the difference.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::report::{Report, Row, thousands};
use super::{Options, output};

const TARGET: &str = "riscv64gc-unknown-none-elf";
/// Goal: code + read-only data the core adds.
const CODE_GOAL: u64 = 16 * 1024;
/// Goal: RAM of a default `Kmod`.
const RAM_GOAL: u64 = 10 * 1024;

/// Builds both kernels; their ELF paths (with, without).
fn build(report: &mut Report) -> Result<(PathBuf, PathBuf), String> {
    let dir = crate::repo_root().join("bench").join("footprint");
    let mut cmd = crate::proc::bare_metal_cargo(&dir);
    cmd.args(["build", "--release"]);
    eprintln!("$ (cd bench/footprint; cargo build --release)");
    report.command("3", "(cd bench/footprint && cargo build --release)");
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building bench/footprint failed ({status})"));
    }
    let out = dir.join("target").join(TARGET).join("release");
    Ok((
        out.join("kernel-with-kmod"),
        out.join("kernel-without-kmod"),
    ))
}

/// `llvm-size -A`: section name → size.
fn sections(elf: &Path) -> Result<HashMap<String, u64>, String> {
    let text = output("llvm-size", &["-A", &elf.display().to_string()])?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let size = w.next()?.parse().ok()?;
            name.starts_with('.').then(|| (name.to_string(), size))
        })
        .collect())
}

/// `llvm-nm -S`: symbol → (size, type letter).
fn symbols(elf: &Path) -> Result<HashMap<String, (u64, char)>, String> {
    let text = output("llvm-nm", &["-S", "--demangle", &elf.display().to_string()])?;
    let mut map = HashMap::new();
    for l in text.lines() {
        // address size type name…
        let mut w = l.splitn(4, ' ');
        let (Some(_), Some(size), Some(kind), Some(name)) =
            (w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        if let (Ok(size), Some(kind)) = (u64::from_str_radix(size, 16), kind.chars().next()) {
            map.insert(name.to_string(), (size, kind));
        }
    }
    Ok(map)
}

/// A symbol as `llvm-nm --demangle` (LLVM 14) leaves Rust's legacy
/// mangling, made readable: `$LT$`… escapes decoded, the hash dropped.
fn tidy(name: &str) -> String {
    let mut s = name.to_string();
    for (from, to) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$C$", ","),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("..", "::"),
    ] {
        s = s.replace(from, to);
    }
    if let Some(stripped) = s.strip_prefix('_') {
        s = stripped.to_string();
    }
    // `::h` and 16 hex digits at the end.
    if let Some(at) = s.rfind("::h")
        && s.len() - at == 19
        && s[at + 3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        s.truncate(at);
    }
    s
}

/// Boots `elf` on QEMU for a few seconds; its console output.
fn boot(elf: &Path) -> Result<String, String> {
    let qemu = crate::setup::qemu()?;
    let mut child = qemu
        .command()
        .args(crate::qemu::VIRT_ARGS)
        .args(["-m", "64M", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let status = crate::proc::wait_or_kill(&mut child, Duration::from_secs(30))?;
    let text = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let line = text
        .lines()
        .filter(|l| l.contains("kmod"))
        .collect::<Vec<_>>()
        .join(" / ");
    match status {
        Some(st) if st.success() => Ok(line),
        Some(st) => Err(format!("{} exited with {st}: {line}", elf.display())),
        None => Err(format!("{} did not exit in 30 s", elf.display())),
    }
}

/// Runs the section.
pub fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let (with, without) = build(report)?;
    report.command(
        "3",
        "llvm-size -A bench/footprint/target/riscv64gc-unknown-none-elf/release/kernel-{with,without}-kmod",
    );
    report.command(
        "3",
        "llvm-nm -S bench/footprint/target/riscv64gc-unknown-none-elf/release/kernel-with-kmod | grep KMOD",
    );
    let (a, b) = (sections(&with)?, sections(&without)?);
    let get = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let code = |m: &HashMap<String, u64>| get(m, ".text") + get(m, ".rodata");
    let ram = |m: &HashMap<String, u64>| get(m, ".data") + get(m, ".bss");
    let added_text = get(&a, ".text") - get(&b, ".text");
    let added_rodata = get(&a, ".rodata") - get(&b, ".rodata");
    let added = code(&a) - code(&b);
    let added_ram = ram(&a).saturating_sub(ram(&b));

    let syms_with = symbols(&with)?;
    let syms_without = symbols(&without)?;
    let kmod = syms_with
        .get("KMOD")
        .map(|(size, _)| *size)
        .ok_or("no KMOD symbol in kernel-with-kmod")?;

    report.rows.push(Row {
        section: "3".into(),
        what: "code + read-only data the core adds (riscv64, opt-level s, LTO)".into(),
        value: format!("{} B ({:.1} KiB)", thousands(added), added as f64 / 1024.0),
        baseline: format!("kernel without Kmod: {} B", thousands(code(&b))),
        ratio: format!(
            ".text +{}, .rodata +{}",
            thousands(added_text),
            thousands(added_rodata)
        ),
        goal: "≤ 16 KiB".into(),
        met: Some(added <= CODE_GOAL),
    });
    report.rows.push(Row {
        section: "3".into(),
        what: "RAM: size_of default Kmod (50 slots), riscv64 symbol KMOD".into(),
        value: format!("{} B ({:.2} KiB)", thousands(kmod), kmod as f64 / 1024.0),
        baseline: String::new(),
        ratio: format!(".data+.bss +{} B", thousands(added_ram)),
        goal: "≤ 10 KiB".into(),
        met: Some(kmod <= RAM_GOAL),
    });

    // The biggest functions and data only the kernel with a Kmod has.
    let mut only: Vec<(u64, String)> = syms_with
        .iter()
        .filter(|(name, (_, kind))| {
            !syms_without.contains_key(*name) && "tTrRdD".contains(*kind) && *name != "KMOD"
        })
        .map(|(name, (size, _))| (*size, name.clone()))
        .collect();
    only.sort_by(|x, y| y.cmp(x));
    let top: Vec<String> = only
        .iter()
        .take(12)
        .map(|(size, name)| {
            let short: String = tidy(name).chars().take(110).collect();
            format!("{size:>6} {short}")
        })
        .collect();
    for line in &top {
        report.raw("3", line.clone());
    }

    let smoke = if opts.no_qemu {
        "not booted (--no-qemu)".to_string()
    } else {
        report.command(
            "3",
            "qemu-system-riscv64 -machine virt -bios default -m 64M -display none -serial stdio \
             -monitor none -no-reboot -kernel …/kernel-{with,without}-kmod",
        );
        let w = boot(&with)?;
        let wo = boot(&without)?;
        format!("`{w}`; `{wo}`")
    };
    report.note(
        "3",
        format!(
            "**Method.** `bench/footprint/` (its own workspace) builds two S-mode kernels \
             for QEMU `virt` with `opt-level = \"s\"`, fat LTO, one codegen unit, \
             `panic = \"abort\"`, the core without a logging feature (silent). Both have the \
             same entry code, a 16550 console with `core::fmt` printing, the `time` CSR \
             clock, the exit device and a built-in program table with `/sbin/modprobe`. \
             `kernel-without-kmod` runs that modprobe itself; `kernel-with-kmod` goes \
             through a `static KMOD: Kmod<Port>` (default: 50 slots, 32 queued waiters, 64 \
             table entries, `CriticalSectionRawMutex` over an interrupts-off \
             `critical-section`): a waiting request, a `nowait` one (a duplicate), a \
             helper-path write and the counters. The difference of `.text + .rodata` is the \
             core plus the port's glue (the `Platform` impl, a polling `sleep_until`, the \
             interrupts-off critical section, the calls: small, and mostly inlined into \
             the request future's poll function, the biggest symbol below), plus \
             `memmove`/`memcpy` and `core::fmt` pieces the baseline kernel did not need. RAM: `KMOD` is the only \
             static the core adds (in `.data`: its initial value is not all zeros), \
             {kmod} bytes on riscv64, the same as `size_of::<Kmod<_>>()` on the 64-bit host. \
             Both kernels are booted as a smoke test: {smoke}. The biggest symbols only the \
             kernel with a `Kmod` has are listed below (bytes, name).",
            kmod = thousands(kmod),
        ),
    );
    Ok(())
}
