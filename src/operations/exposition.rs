//! Prometheus' text exposition format 0.0.4, as `/metrics` serves it:
//! `# HELP` and `# TYPE` lines, then `name{label="value"} number` lines,
//! each ending in `\n`; and the latency histogram it reports.
//!
//! Metric and label names are myroute's own constants; label values (pool
//! names, addresses) are escaped.

use std::fmt::{Display, Write as _};
use std::time::Duration;

/// A metric family's type (the `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Builds an exposition: a [`family`](Exposition::family) line pair, then
/// that family's samples, then the next family.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// `# HELP name help` and `# TYPE name kind`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        // In HELP text only backslash and newline are escaped.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the current family: `name{k="v",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                // Label values escape backslash, double quote and newline.
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// The buckets of myroute's latency histograms, in seconds (`+Inf` is
/// implied).
pub const SECONDS_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram over [`SECONDS_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket alone (not cumulative); those above the
    /// last bound are only in `count`.
    counts: [u64; SECONDS_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one duration. A value on a bound counts in that bound's
    /// bucket (`le` is "less than or equal").
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = SECONDS_BUCKETS.iter().position(|&b| secs <= b) {
            self.counts[i] = self.counts[i].saturating_add(1);
        }
        self.sum += secs;
        self.count = self.count.saturating_add(1);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes this histogram as a whole family: `name_bucket{le="b"}` with
    /// running sums per bound and `+Inf`, then `name_sum` and `name_count`.
    pub fn write(&self, e: &mut Exposition, name: &str, help: &str) {
        e.family(name, help, Kind::Histogram);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (bound, n) in SECONDS_BUCKETS.iter().zip(self.counts) {
            cumulative = cumulative.saturating_add(n);
            // f64's Display is the shortest decimal that reads back the same
            // (`0.0005`, `1`), as Prometheus parsers expect.
            e.sample(&bucket, &[("le", &bound.to_string())], cumulative);
        }
        e.sample(&bucket, &[("le", "+Inf")], self.count);
        e.sample(&format!("{name}_sum"), &[], self.sum);
        e.sample(&format!("{name}_count"), &[], self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut e = Exposition::new();
        e.family("myroute_info", "Build information.", Kind::Gauge);
        e.sample("myroute_info", &[("version", "0.1.0")], 1);
        e.family(
            "myroute_bytes_total",
            "Bytes relayed.\nin: from clients \\ out: to them",
            Kind::Counter,
        );
        e.sample("myroute_bytes_total", &[("direction", "in")], 12345678901234u64);
        e.sample("myroute_bytes_total", &[("direction", "out")], 0usize);
        e.family("myroute_x", "Escapes.", Kind::Gauge);
        e.sample("myroute_x", &[("a", "q\"b\\s\nn"), ("b", "é")], 2);
        e.sample("myroute_x", &[], 12.5);
        assert_eq!(
            e.into_string(),
            "# HELP myroute_info Build information.\n\
             # TYPE myroute_info gauge\n\
             myroute_info{version=\"0.1.0\"} 1\n\
             # HELP myroute_bytes_total Bytes relayed.\\nin: from clients \\\\ out: to them\n\
             # TYPE myroute_bytes_total counter\n\
             myroute_bytes_total{direction=\"in\"} 12345678901234\n\
             myroute_bytes_total{direction=\"out\"} 0\n\
             # HELP myroute_x Escapes.\n\
             # TYPE myroute_x gauge\n\
             myroute_x{a=\"q\\\"b\\\\s\\nn\",b=\"é\"} 2\n\
             myroute_x 12.5\n"
        );
    }

    #[test]
    fn histograms() {
        let mut h = Histogram::new();
        for ms in [0u64, 1, 1, 3, 10, 700, 2_000, 60_000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 8);
        assert_eq!(h.counts, [1, 2, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0]);
        let mut e = Exposition::new();
        h.write(&mut e, "myroute_handshake_seconds", "Accept to client verified.");
        let text = e.into_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 15 + 2);
        assert_eq!(lines[1], "# TYPE myroute_handshake_seconds histogram");
        assert_eq!(lines[2], "myroute_handshake_seconds_bucket{le=\"0.0005\"} 1");
        assert_eq!(lines[3], "myroute_handshake_seconds_bucket{le=\"0.001\"} 3");
        assert_eq!(lines[4], "myroute_handshake_seconds_bucket{le=\"0.0025\"} 3");
        assert_eq!(lines[12], "myroute_handshake_seconds_bucket{le=\"1\"} 6");
        assert_eq!(lines[13], "myroute_handshake_seconds_bucket{le=\"2.5\"} 7");
        assert_eq!(lines[15], "myroute_handshake_seconds_bucket{le=\"10\"} 7");
        assert_eq!(lines[16], "myroute_handshake_seconds_bucket{le=\"+Inf\"} 8");
        assert_eq!(lines[17], "myroute_handshake_seconds_sum 62.715");
        assert_eq!(lines[18], "myroute_handshake_seconds_count 8");
    }

    #[test]
    fn histogram_bounds_are_inclusive() {
        let mut h = Histogram::new();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_secs(10));
        h.observe(Duration::from_nanos(10_000_000_001));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[13], 1);
        assert_eq!(h.counts.iter().sum::<u64>(), 2);
        assert_eq!(h.count(), 3);
    }
}
