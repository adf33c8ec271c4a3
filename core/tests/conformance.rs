//! The port conformance kit (`reqmod::conformance`: the kmod selftest
//! scenarios of SPEC §7 and more) on the virtual-time platform: every case
//! must pass, in virtual time (a busy timeout costs microseconds here).

use reqmod::conformance::{self, Verdict};
use reqmod::sim::{Executor, SimHarness, SimPlatform};

/// The kit's future holds 62 requests at once; a debug build moves it
/// through the stack several times, more than a test thread's 2 MiB.
fn on_a_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(f)
        .expect("thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn the_sim_passes_the_conformance_kit() {
    on_a_big_stack(passes);
}

fn passes() {
    let sim = SimPlatform::new();
    let harness = SimHarness::new(&sim);
    let mut cases = Vec::new();
    let mut ex = Executor::new();
    let summary = ex.spawn(conformance::run(&harness, |case| {
        println!("{case}");
        cases.push(*case);
    }));
    ex.run(&sim).expect("the kit ends");
    drop(ex);
    let summary = summary.take().expect("finished");
    println!("{summary}");
    assert!(
        cases.iter().all(|c| c.verdict == Verdict::Passed),
        "{cases:#?}"
    );
    assert_eq!(
        (summary.passed, summary.failed, summary.skipped),
        (cases.len(), 0, 0)
    );
    assert!(cases.len() >= 18);
}

#[test]
fn the_kit_fails_a_port_that_breaks_the_rules() {
    on_a_big_stack(fails);
}

fn fails() {
    // A platform whose exec errors all come back as ENOENT: the kit says so.
    let sim = SimPlatform::new();
    let harness = SimHarness::new(&sim);
    let mut failed = Vec::new();
    let mut ex = Executor::new();
    sim.set_script(|cmd| {
        if cmd.path().starts_with(b"/sim/not-") {
            reqmod::sim::Behavior::fails_to_start(reqmod::Errno::ENOENT)
        } else {
            reqmod::sim::Behavior::exits(0)
        }
    });
    let summary = ex.spawn(conformance::run(&harness, |case| {
        if let Verdict::Failed { .. } = case.verdict {
            failed.push(case.id);
        }
    }));
    ex.run(&sim).expect("the kit ends");
    drop(ex);
    assert!(!summary.take().expect("finished").ok());
    assert!(
        failed.contains(&"exec-eacces") && failed.contains(&"exec-enoexec"),
        "{failed:?}"
    );
    assert!(failed.contains(&"0001"), "exit 1 became 0: {failed:?}");
}
