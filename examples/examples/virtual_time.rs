//! The autoloader's timing rules on the virtual-time platform: 50 slots, the
//! 5 s busy timeout, and duplicate suppression, in microseconds of real time.
//! Run: `cargo run -p reqmod-examples --example virtual_time`

use std::time::{Duration, Instant};

use reqmod::sim::{Behavior, Executor, SimPlatform};
use reqmod::{KernelRet, Kmod};

fn main() {
    let real = Instant::now();
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    // Every helper takes 7 s; "snd" is not found (modprobe exits 1).
    sim.set_script(|cmd| {
        Behavior::exits(u8::from(cmd.name() == "snd")).lasting(Duration::from_secs(7))
    });

    let mut ex = Executor::new();
    let timed = |name: String, wait: bool| {
        let kmod = &kmod;
        async move {
            let out = kmod.request(wait, format_args!("{name}")).await;
            (name, wait, out.kernel_ret(), kmod.platform().now())
        }
    };
    // 58 distinct modules at once: 50 get a slot, 8 wait; the helpers take 7 s,
    // so the 8 give up after 5 s with -ETIME (-62).
    let mut tasks: Vec<_> = (0..58)
        .map(|i| ex.spawn(timed(format!("mod{i:02}"), true)))
        .collect();
    ex.run_until(sim, Duration::from_secs(8)).unwrap();
    // Now 40 requests for one module: one helper run, 39 duplicates that get its
    // result (256); nowait duplicates return 0 at once.
    for i in 0..40 {
        tasks.push(ex.spawn(timed("snd".into(), i % 4 != 3)));
    }
    ex.run(sim).unwrap();

    println!(
        "{:<8} {:<6} {:>6} {:>8}",
        "request", "wait", "result", "time"
    );
    let mut shown = 0;
    for (i, t) in tasks.iter().enumerate() {
        let (name, wait, ret, at) = t.take().unwrap();
        // Print a sample: the first and last of each group.
        if matches!(i, 0 | 1 | 49 | 50 | 57 | 58 | 59 | 61 | 97) {
            println!("{name:<8} {wait:<6} {ret:>6} {:>7.3}s", at.as_secs_f64());
            shown += 1;
        }
    }
    let st = kmod.stats();
    println!("({} of {} requests shown)", shown, tasks.len());
    println!(
        "helper runs {}, duplicates served {}, busy timeouts {}, most slots held {}",
        st.helpers_started, st.duplicates, st.busy_timeouts, st.max_concurrent_seen
    );
    println!(
        "virtual time {:.1}s in {:.2?} of real time",
        sim.now().as_secs_f64(),
        real.elapsed()
    );
}
