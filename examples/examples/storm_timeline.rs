//! The timeline of a storm, to look at: 300 requests over 60 module names
//! arriving within 2 s, 8 slots, helpers that take 6 s, on the virtual clock.
//! Once with the kernel's rules and once with every policy on.
//!
//! Run: `cargo run -p reqmod-examples --example storm_timeline`. It writes
//! `target/storm-linux.trace.json` and `target/storm-policies.trace.json`
//! (open them in <https://ui.perfetto.dev>) and renders both into
//! `docs/storm-timeline.svg` with the small SVG writer below.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use reqmod::sim::{Behavior, Executor, SimPlatform};
use reqmod::{AllowAll, Config, Event, KernelRet, Kmod, Platform, RequestId};

const SLOTS: usize = 8;
const REQUESTS: usize = 300;
const NAMES: usize = 60;
const HELPER: Duration = Duration::from_secs(6);

/// What the picture needs of the stream.
#[derive(Clone, Debug)]
enum Mark {
    Granted(RequestId, String),
    Released(RequestId),
    Queue(usize),
    Duplicate(RequestId),
    Timeout,
}

struct Storm {
    title: String,
    marks: Vec<(Duration, Mark)>,
    end: Duration,
    timeouts: usize,
    duplicates: u64,
    helpers: u64,
    last_ok: Duration,
}

fn run(title: &str, config: Config, trace_file: &str) -> Storm {
    let config = config.with_max_concurrent(SLOTS);
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    sim.set_script(|_| Behavior::exits(0).lasting(HELPER));
    sim.set_recording(false);
    sim.record_chrome_trace();
    let marks = Rc::new(RefCell::new(Vec::new()));
    {
        let marks = marks.clone();
        sim.observe(move |at, event| {
            let mark = match *event {
                Event::SlotGranted {
                    id, name, waiting, ..
                } => {
                    marks.borrow_mut().push((at, Mark::Queue(waiting)));
                    Mark::Granted(id, name.to_string())
                }
                Event::SlotReleased { id, waiting, .. } => {
                    marks.borrow_mut().push((at, Mark::Queue(waiting)));
                    Mark::Released(id)
                }
                Event::SlotWait { waiting, .. } => Mark::Queue(waiting),
                Event::Duplicate { id, .. } => Mark::Duplicate(id),
                Event::BusyTimeout { waiting, .. } => {
                    marks.borrow_mut().push((at, Mark::Queue(waiting)));
                    Mark::Timeout
                }
                _ => return,
            };
            marks.borrow_mut().push((at, mark));
        });
    }
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut ex = Executor::new();
    let mut handles = Vec::new();
    for _ in 0..REQUESTS {
        let name = format!("mod-{:02}", rng.usize(0..NAMES));
        let start = Duration::from_millis(rng.u64(0..2000));
        let request = kmod.request_module(format_args!("{name}"));
        handles.push(ex.spawn(async move {
            sim.sleep_until(start).await;
            (request.await.kernel_ret(), sim.now())
        }));
    }
    ex.run(sim).expect("the storm ends");
    sim.write_chrome_trace(trace_file).expect("write the trace");
    let results: Vec<(i32, Duration)> = handles.iter().map(|h| h.take().unwrap()).collect();
    let st = kmod.stats();
    let marks = std::mem::take(&mut *marks.borrow_mut());
    Storm {
        title: title.to_string(),
        end: sim.now(),
        timeouts: results.iter().filter(|r| r.0 == -62).count(),
        duplicates: st.duplicates,
        helpers: st.helpers_started,
        last_ok: results
            .iter()
            .filter(|r| r.0 == 0)
            .map(|r| r.1)
            .max()
            .unwrap_or_default(),
        marks,
    }
}

fn main() {
    std::fs::create_dir_all("target").expect("target/");
    let linux = run(
        "Linux (Config::DEFAULT): duplicates hold slots, every waiter gives up at 5 s",
        Config::DEFAULT,
        "target/storm-linux.trace.json",
    );
    let policies = run(
        "reqmod with Config::WITH_POLICIES: duplicates wait without a slot",
        Config::WITH_POLICIES,
        "target/storm-policies.trace.json",
    );
    for s in [&linux, &policies] {
        println!(
            "{}\n  {} requests: {} helpers, {} duplicates, {} busy timeouts (-ETIME); last success at {:.1} s, done at {:.1} s",
            s.title,
            REQUESTS,
            s.helpers,
            s.duplicates,
            s.timeouts,
            s.last_ok.as_secs_f64(),
            s.end.as_secs_f64()
        );
    }
    let svg = render(&[linux, policies]);
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/storm-timeline.svg");
    std::fs::write(out, svg).expect("write docs/storm-timeline.svg");
    println!(
        "wrote docs/storm-timeline.svg, target/storm-linux.trace.json, target/storm-policies.trace.json"
    );
}

// ---------------------------------------------------------------- SVG

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 70.0;
const LANE: f64 = 16.0;
const QUEUE_H: f64 = 70.0;

fn render(storms: &[Storm]) -> String {
    let horizon = storms
        .iter()
        .map(|s| s.end)
        .max()
        .unwrap_or_default()
        .as_secs_f64()
        .ceil()
        .max(1.0);
    let panel = 40.0 + SLOTS as f64 * LANE + 14.0 + QUEUE_H + 40.0;
    let height = 30.0 + panel * storms.len() as f64;
    let x = |t: f64| LEFT + (WIDTH - LEFT - 20.0) * t / horizon;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{REQUESTS} requests over {NAMES} modules within 2 s, {SLOTS} slots, helpers of {} s (virtual time)</text>"#,
        HELPER.as_secs()
    );
    for (p, s) in storms.iter().enumerate() {
        let top = 30.0 + panel * p as f64;
        let lanes_top = top + 36.0;
        let queue_top = lanes_top + SLOTS as f64 * LANE + 14.0;
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{}" font-size="12" font-weight="bold">{}</text>"#,
            top + 12.0,
            s.title
        );
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{}">{} helpers, {} duplicates, {} busy timeouts (-ETIME, red); last success at {:.1} s</text>"#,
            top + 27.0,
            s.helpers,
            s.duplicates,
            s.timeouts,
            s.last_ok.as_secs_f64()
        );
        // Seconds.
        for sec in 0..=horizon as u64 {
            let xs = x(sec as f64);
            let _ = writeln!(
                svg,
                "<line x1=\"{xs:.1}\" y1=\"{lanes_top}\" x2=\"{xs:.1}\" y2=\"{}\" stroke=\"#eee\"/>",
                queue_top + QUEUE_H
            );
            let _ = writeln!(
                svg,
                "<text x=\"{xs:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{sec} s</text>",
                queue_top + QUEUE_H + 13.0
            );
        }
        // The 5 s busy timeout, from the first arrival.
        let cliff = x(5.0);
        let _ = writeln!(
            svg,
            "<line x1=\"{cliff:.1}\" y1=\"{lanes_top}\" x2=\"{cliff:.1}\" y2=\"{}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/>",
            queue_top + QUEUE_H
        );
        // Slot lanes.
        let dups: HashSet<RequestId> = s
            .marks
            .iter()
            .filter_map(|(_, m)| match m {
                Mark::Duplicate(id) => Some(*id),
                _ => None,
            })
            .collect();
        let mut lanes: Vec<Option<(RequestId, String, Duration)>> = vec![None; SLOTS];
        for lane in 0..SLOTS {
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#444\">slot {}</text>",
                LEFT - 6.0,
                lanes_top + lane as f64 * LANE + 11.5,
                lane + 1
            );
        }
        for (at, m) in &s.marks {
            match m {
                Mark::Granted(id, name) => {
                    if let Some(free) = lanes.iter().position(Option::is_none) {
                        lanes[free] = Some((*id, name.clone(), *at));
                    }
                }
                Mark::Released(id) => {
                    if let Some(i) = lanes
                        .iter()
                        .position(|l| l.as_ref().is_some_and(|l| l.0 == *id))
                    {
                        let (id, name, from) = lanes[i].take().unwrap();
                        let (x0, x1) = (x(from.as_secs_f64()), x(at.as_secs_f64()));
                        let y = lanes_top + i as f64 * LANE + 1.0;
                        let hue = name
                            .bytes()
                            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
                            % 360;
                        let dup = dups.contains(&id);
                        let (fill, opacity) = if dup {
                            ("#999".to_string(), 0.5)
                        } else {
                            (format!("hsl({hue},60%,55%)"), 0.9)
                        };
                        let _ = writeln!(
                            svg,
                            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{}\" fill=\"{fill}\" opacity=\"{opacity}\" stroke=\"white\" stroke-width=\"0.5\"><title>{name}{}: {:.2}-{:.2} s</title></rect>",
                            (x1 - x0).max(1.0),
                            LANE - 2.0,
                            if dup {
                                " (duplicate, holding a slot)"
                            } else {
                                ""
                            },
                            from.as_secs_f64(),
                            at.as_secs_f64()
                        );
                    }
                }
                _ => {}
            }
        }
        // Requests waiting for a slot.
        let max_q = s
            .marks
            .iter()
            .filter_map(|(_, m)| match m {
                Mark::Queue(q) => Some(*q),
                _ => None,
            })
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let qy = |q: usize| queue_top + QUEUE_H - QUEUE_H * q as f64 / max_q;
        let mut points = format!("{:.1},{:.1}", x(0.0), qy(0));
        let mut last = 0;
        for (at, m) in &s.marks {
            if let Mark::Queue(q) = m {
                let xs = x(at.as_secs_f64());
                let _ = write!(points, " {xs:.1},{:.1} {xs:.1},{:.1}", qy(last), qy(*q));
                last = *q;
            }
        }
        let _ = writeln!(
            svg,
            "<polyline points=\"{points}\" fill=\"none\" stroke=\"#236\" stroke-width=\"1.5\"/>"
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#236\">waiting</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#236\">{}</text>",
            LEFT - 6.0,
            queue_top + QUEUE_H / 2.0 + 4.0,
            LEFT - 6.0,
            queue_top + 9.0,
            max_q
        );
        // Busy timeouts.
        for (at, m) in &s.marks {
            if let Mark::Timeout = m {
                let xs = x(at.as_secs_f64());
                let _ = writeln!(
                    svg,
                    "<line x1=\"{xs:.1}\" y1=\"{}\" x2=\"{xs:.1}\" y2=\"{}\" stroke=\"#c00\" opacity=\"0.6\"/>",
                    queue_top + QUEUE_H - 8.0,
                    queue_top + QUEUE_H
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}
