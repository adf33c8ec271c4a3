//! `-append demo`: autoload drivers for the devices QEMU attached, then mount
//! two file systems by name, like a booting system does.
//!
//! 1. Probe every virtio-mmio transport of the device tree; for each device,
//!    request its modalias `virtio:dXXXXXXXXvXXXXXXXX` (one task per device,
//!    all at once, as udev does). Two devices of one kind make the second
//!    request a duplicate, answered from the duplicate table.
//! 2. Request `fs-ext4` and `fs-vfat` (a mount of an unknown file system
//!    type does that); their inits request more modules.
//! 3. Print a table: request, result (the kernel integer), helper runs and
//!    duplicates served for that name, time to the result.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use reqmod::kernel_ret;

use crate::machine::fdt::BootInfo;
use crate::machine::{exit, virtio};
use crate::os::task::spawn_join;
use crate::os::time;
use crate::platform::{KMOD, counts_for};
use crate::{modules, platform};

struct Row {
    request: String,
    result: i32,
    took: Duration,
}

async fn request_all(names: Vec<String>) -> Vec<Row> {
    let handles: Vec<_> = names
        .into_iter()
        .map(|name| {
            spawn_join(async move {
                let t0 = time::now();
                let result = kernel_ret(platform::request(&KMOD, true, &name).await);
                Row {
                    request: name,
                    result,
                    took: time::now() - t0,
                }
            })
        })
        .collect();
    let mut rows = Vec::new();
    for h in handles {
        rows.push(h.await);
    }
    rows
}

/// Runs the demo, then exits QEMU (status 0 if every request returned 0).
pub async fn run(info: BootInfo) {
    let t0 = time::now();
    let mut aliases = Vec::new();
    for &base in &info.virtio[..info.virtio_count] {
        if let Some(dev) = virtio::probe(base) {
            let alias = format!("virtio:d{:08X}v{:08X}", dev.device, dev.vendor);
            defmt::info!(
                "virtio-mmio@{=usize:#x}: device {} vendor {=u32:#x} -> {=str}",
                base,
                dev.device,
                dev.vendor,
                alias.as_str()
            );
            aliases.push(alias);
        }
    }
    if aliases.is_empty() {
        defmt::warn!("no virtio devices attached (add -device virtio-rng-device …)");
    }
    let mut rows = request_all(aliases).await;
    rows.extend(request_all(["fs-ext4", "fs-vfat"].map(String::from).to_vec()).await);

    defmt::info!(
        "{=str}",
        "request                      result  helper runs  dups served      time"
    );
    defmt::info!(
        "{=str}",
        "---------------------------  ------  -----------  -----------  --------"
    );
    for r in &rows {
        let c = counts_for(&r.request);
        let line = format!(
            "{:<27}  {:>6}  {:>11}  {:>11}  {:>5}.{:02} ms",
            r.request,
            r.result,
            c.helper_runs,
            c.duplicates,
            r.took.as_millis(),
            (r.took.as_micros() % 1000) / 10
        );
        defmt::info!("{=str}", line.as_str());
    }
    let nested: Vec<String> = platform::all_counts()
        .into_iter()
        .filter(|(name, _)| !rows.iter().any(|r| &r.request == name))
        .map(|(name, c)| format!("{name} ({} run)", c.helper_runs))
        .collect();
    if !nested.is_empty() {
        defmt::info!(
            "requested by module inits: {=str}",
            nested.join(", ").as_str()
        );
    }
    let order: Vec<&str> = modules::load_order().collect();
    defmt::info!("modules loaded, in order: {=str}", order.join(" ").as_str());
    let s = KMOD.stats();
    defmt::info!(
        "kmod: {} requests, {} helpers started, {} duplicates served, {} busy timeouts, \
         at most {} slots at once; demo took {} ms",
        s.requests,
        s.helpers_started,
        s.duplicates,
        s.busy_timeouts,
        s.max_concurrent_seen,
        (time::now() - t0).as_millis() as u64
    );
    if rows.iter().all(|r| r.result == 0) {
        exit::exit_success()
    } else {
        defmt::error!("demo: some requests failed");
        exit::exit_failure(1)
    }
}
