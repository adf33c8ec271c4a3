//! [`ChromeTrace`]: the event stream as a timeline a person can look at, in
//! the Chrome trace event format (the JSON that Perfetto, `ui.perfetto.dev`,
//! and `chrome://tracing` open).
//!
//! One track per slot (a bar per request holding it, named after the
//! module), a counter for the requests waiting for a slot and one for the
//! slots in use, and markers for duplicates, busy timeouts, loops and
//! watchdog kills on a track of their own. `no_std`: it writes to any
//! [`core::fmt::Write`] (a `String`, a UART, a ring buffer), event by event.
//!
//! ```
//! use core::time::Duration;
//! use reqmod::timeline::ChromeTrace;
//! use reqmod::{Event, RequestId};
//!
//! let mut trace = ChromeTrace::<_, 8>::new(String::new());
//! let id = RequestId::new(1);
//! let granted = Event::SlotGranted { id, name: "fs-ext4", waited: Duration::ZERO, waiting: 0, in_use: 1 };
//! trace.event(Duration::ZERO, &granted).unwrap();
//! trace.event(Duration::from_millis(3), &Event::SlotReleased { id, in_use: 0, waiting: 0 }).unwrap();
//! let json = trace.finish().unwrap();
//! assert!(json.starts_with('[') && json.trim_end().ends_with(']'));
//! assert!(json.contains(r#""name":"fs-ext4","ph":"B""#));
//! ```

use core::fmt::{self, Write};
use core::time::Duration;

use crate::{Event, RequestId};

/// The thread id of the markers' track.
const MARKERS: usize = 0;

/// A Chrome trace writer over `W`, with `LANES` slot tracks (requests that
/// hold a slot while all lanes are taken share one more track).
#[derive(Debug)]
pub struct ChromeTrace<W: Write, const LANES: usize = 64> {
    out: W,
    lanes: [Option<RequestId>; LANES],
    /// Which lanes (and the overflow lane, and the markers' track) have
    /// been named.
    named: [bool; LANES],
    named_extra: bool,
    named_markers: bool,
    any: bool,
}

impl<W: Write, const LANES: usize> ChromeTrace<W, LANES> {
    /// A trace written to `out`.
    pub const fn new(out: W) -> Self {
        ChromeTrace {
            out,
            lanes: [None; LANES],
            named: [false; LANES],
            named_extra: false,
            named_markers: false,
            any: false,
        }
    }

    /// Adds `event`, which happened at `at` (any monotonic clock).
    pub fn event(&mut self, at: Duration, event: &Event<'_>) -> fmt::Result {
        let ts = at.as_micros();
        match *event {
            Event::SlotGranted {
                id,
                name,
                waiting,
                in_use,
                ..
            } => {
                let tid = self.take_lane(id)?;
                self.open("B", ts, tid, name)?;
                write!(self.out, r#","args":{{"request":{}}}}}"#, id.get())?;
                self.counters(ts, waiting, in_use)
            }
            Event::SlotReleased {
                id,
                waiting,
                in_use,
            } => {
                let tid = self.give_lane(id);
                self.begin()?;
                write!(self.out, r#"{{"ph":"E","ts":{ts},"pid":1,"tid":{tid}}}"#)?;
                self.counters(ts, waiting, in_use)
            }
            Event::Cancelled { id, name } => {
                // A cancelled request gives its slot back without a release.
                // (On the shared overflow track its bar stays open.)
                if self.lanes.contains(&Some(id)) {
                    let tid = self.give_lane(id);
                    self.begin()?;
                    write!(self.out, r#"{{"ph":"E","ts":{ts},"pid":1,"tid":{tid}}}"#)?;
                }
                self.marker(ts, "cancelled", name, id)
            }
            Event::SlotWait {
                waiting, in_use, ..
            } => self.counters(ts, waiting, in_use),
            Event::Duplicate { id, name, .. } => self.marker(ts, "duplicate", name, id),
            Event::BusyTimeout {
                id,
                name,
                waiting,
                in_use,
                ..
            } => {
                self.marker(ts, "busy timeout", name, id)?;
                self.counters(ts, waiting, in_use)
            }
            Event::LoopRefused { id, name, .. } => self.marker(ts, "loop refused", name, id),
            Event::HelperKilled { id, name, .. } => self.marker(ts, "helper killed", name, id),
            _ => Ok(()),
        }
    }

    /// Ends the JSON array and returns the writer.
    pub fn finish(mut self) -> Result<W, fmt::Error> {
        if !self.any {
            self.out.write_str("[")?;
        }
        self.out.write_str("\n]\n")?;
        Ok(self.out)
    }

    /// The writer (the trace so far, without its closing `]`).
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Starts the next array element.
    fn begin(&mut self) -> fmt::Result {
        self.out.write_str(if self.any { ",\n" } else { "[\n" })?;
        self.any = true;
        Ok(())
    }

    fn take_lane(&mut self, id: RequestId) -> Result<usize, fmt::Error> {
        match self.lanes.iter().position(Option::is_none) {
            Some(i) => {
                if let Some(lane) = self.lanes.get_mut(i) {
                    *lane = Some(id);
                }
                let tid = i + 1;
                if !self.named.get(i).copied().unwrap_or(true) {
                    if let Some(n) = self.named.get_mut(i) {
                        *n = true;
                    }
                    self.name_track(tid, format_args!("slot {tid}"))?;
                }
                Ok(tid)
            }
            None => {
                let tid = LANES + 1;
                if !self.named_extra {
                    self.named_extra = true;
                    self.name_track(tid, format_args!("more slots"))?;
                }
                Ok(tid)
            }
        }
    }

    fn give_lane(&mut self, id: RequestId) -> usize {
        match self.lanes.iter().position(|l| *l == Some(id)) {
            Some(i) => {
                if let Some(lane) = self.lanes.get_mut(i) {
                    *lane = None;
                }
                i + 1
            }
            None => LANES + 1,
        }
    }

    fn name_track(&mut self, tid: usize, name: fmt::Arguments<'_>) -> fmt::Result {
        self.begin()?;
        write!(
            self.out,
            r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{tid},"args":{{"name":"{name}"}}}}"#
        )?;
        self.begin()?;
        write!(
            self.out,
            r#"{{"name":"thread_sort_index","ph":"M","pid":1,"tid":{tid},"args":{{"sort_index":{tid}}}}}"#
        )
    }

    /// `{"name":"<name>","ph":"<ph>","ts":..,"pid":1,"tid":..` (left open).
    fn open(&mut self, ph: &str, ts: u128, tid: usize, name: &str) -> fmt::Result {
        self.begin()?;
        self.out.write_str(r#"{"name":""#)?;
        json_escape(&mut self.out, name)?;
        write!(self.out, r#"","ph":"{ph}","ts":{ts},"pid":1,"tid":{tid}"#)
    }

    fn counters(&mut self, ts: u128, waiting: usize, in_use: usize) -> fmt::Result {
        self.begin()?;
        write!(
            self.out,
            r#"{{"name":"waiting for a slot","ph":"C","ts":{ts},"pid":1,"args":{{"requests":{waiting}}}}}"#
        )?;
        self.begin()?;
        write!(
            self.out,
            r#"{{"name":"slots in use","ph":"C","ts":{ts},"pid":1,"args":{{"slots":{in_use}}}}}"#
        )
    }

    fn marker(&mut self, ts: u128, what: &str, name: &str, id: RequestId) -> fmt::Result {
        if !self.named_markers {
            self.named_markers = true;
            self.name_track(MARKERS, format_args!("duplicates, timeouts, loops, kills"))?;
        }
        self.begin()?;
        write!(self.out, r#"{{"name":"{what}: "#)?;
        json_escape(&mut self.out, name)?;
        write!(
            self.out,
            r#"","ph":"i","s":"t","ts":{ts},"pid":1,"tid":{MARKERS},"args":{{"request":{}}}}}"#,
            id.get()
        )
    }
}

/// Writes `s` as the inside of a JSON string.
fn json_escape(out: &mut impl Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn granted(id: u64, name: &str) -> Event<'_> {
        Event::SlotGranted {
            id: RequestId::new(id),
            name,
            waited: Duration::ZERO,
            waiting: 0,
            in_use: 1,
        }
    }

    fn released(id: u64) -> Event<'static> {
        Event::SlotReleased {
            id: RequestId::new(id),
            in_use: 0,
            waiting: 0,
        }
    }

    #[test]
    fn slots_get_lanes_and_give_them_back() {
        let mut t = ChromeTrace::<_, 2>::new(String::new());
        t.event(Duration::ZERO, &granted(1, "a")).unwrap();
        t.event(Duration::ZERO, &granted(2, "b")).unwrap();
        t.event(Duration::ZERO, &granted(3, "c")).unwrap(); // no lane left
        t.event(Duration::from_micros(5), &released(1)).unwrap();
        t.event(Duration::from_micros(6), &granted(4, "d")).unwrap(); // lane 1 again
        t.event(Duration::from_micros(7), &released(3)).unwrap();
        let json = t.finish().unwrap();
        assert!(
            json.contains(r#""name":"a","ph":"B","ts":0,"pid":1,"tid":1"#),
            "{json}"
        );
        assert!(json.contains(r#""name":"b","ph":"B","ts":0,"pid":1,"tid":2"#));
        assert!(json.contains(r#""name":"c","ph":"B","ts":0,"pid":1,"tid":3"#));
        assert!(json.contains(r#"{"ph":"E","ts":5,"pid":1,"tid":1}"#));
        assert!(json.contains(r#""name":"d","ph":"B","ts":6,"pid":1,"tid":1"#));
        assert!(json.contains(r#"{"ph":"E","ts":7,"pid":1,"tid":3}"#));
        assert!(json.contains(r#""args":{"name":"more slots"}"#));
    }

    #[test]
    fn names_are_escaped_and_the_array_is_valid() {
        let mut t = ChromeTrace::<_, 4>::new(String::new());
        t.event(Duration::ZERO, &granted(1, "a\"b\\c\n")).unwrap();
        let dup = Event::Duplicate {
            id: RequestId::new(2),
            name: "x",
            wait: true,
            caller: core::panic::Location::caller(),
            first: RequestId::new(1),
        };
        t.event(Duration::from_micros(1), &dup).unwrap();
        let json = t.finish().unwrap();
        assert!(json.contains(r#""name":"a\"b\\c\u000a""#), "{json}");
        assert!(json.contains(r#""name":"duplicate: x","ph":"i""#));
        // One element per line between the brackets, comma separated.
        let body: std::vec::Vec<&str> = json.trim().lines().collect();
        assert_eq!(body.first(), Some(&"["));
        assert_eq!(body.last(), Some(&"]"));
        for line in &body[1..body.len() - 2] {
            assert!(line.starts_with('{') && line.ends_with("},"), "{line}");
        }
    }

    #[test]
    fn an_empty_trace_is_an_empty_array() {
        let t = ChromeTrace::<_, 4>::new(String::new());
        assert_eq!(
            t.finish().unwrap().split_whitespace().collect::<String>(),
            "[]"
        );
    }
}
