//! Prometheus' text exposition format 0.0.4, as `/metrics` serves it:
//! `# HELP` and `# TYPE` lines, then `name{label="value"} number` lines,
//! each ending in `\n`; and the latency histogram it reports.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

/// A metric family's type (the `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: counts are written as integers, measurements with the
/// shortest decimal that reads back as the same `f64` (`0.25`, `1`, `+Inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i128),
    Float(f64),
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(i128::from(v))
            }
        }
    )*};
}
int_values!(u8, u16, u32, u64, i8, i16, i32, i64);

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        // usize is at most 64 bits on every target Rust supports.
        Value::Int(i128::try_from(v).unwrap_or(i128::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i128::from(u8::from(v)))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => f.write_str(&float(x)),
        }
    }
}

/// A float as the format writes it: `NaN`, `+Inf`, `-Inf`, or the shortest
/// decimal that reads back as the same `f64`, with no `.0` on whole numbers
/// (`1`, `0.0005`) and an exponent when very small or large (`1e-7`,
/// `1e21`), as Go's `FormatFloat(x, 'g', -1, 64)`, which Prometheus' own
/// clients use.
fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        let s = if x > 0.0 { "+Inf" } else { "-Inf" };
        s.into()
    } else if x != 0.0 && !(1e-4..1e21).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// Builds an exposition: one [`family`](Exposition::family) call, then that
/// family's samples, then the next family. Each family must appear once and
/// its samples together; names and label names are myroute's own constants
/// (checked in debug builds), label values may be anything.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    out: String,
    /// The family being written, to check sample names in debug builds.
    family: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: `# HELP name help` and `# TYPE name kind`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        debug_assert!(is_metric_name(name), "bad metric name {name:?}");
        // In HELP text only backslash and newline are escaped.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self.family = name.to_string();
    }

    /// One sample of the current family: `name{k="v",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        debug_assert!(
            name.starts_with(self.family.as_str()) && is_metric_name(name),
            "sample {name:?} outside family {:?}",
            self.family
        );
        self.out.push_str(name);
        put_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", value.into());
    }

    /// A whole histogram family with one series: HELP, TYPE, then
    /// `name_bucket{...,le="b"}` per bound and `le="+Inf"`, `name_sum`,
    /// `name_count`.
    ///
    /// `bounds` are the finite upper bounds, ascending (`+Inf` is added).
    /// `counts[i]` is how many observations fell in bucket `i` alone,
    /// `bounds[i-1] < v <= bounds[i]` (per bucket, not cumulative, as
    /// [`Histogram`] keeps them); the written buckets are the running sums.
    /// Observations above the last bound are only in `count`.
    #[allow(clippy::too_many_arguments)]
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        count: u64,
    ) {
        self.family(name, help, Kind::Histogram);
        self.histogram_series(name, labels, bounds, counts, sum, count);
    }

    /// One more series of the current histogram family (another label
    /// set); arguments as for [`histogram`](Exposition::histogram).
    pub fn histogram_series(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        count: u64,
    ) {
        debug_assert_eq!(bounds.len(), counts.len());
        debug_assert!(
            bounds.windows(2).all(|w| w[0] < w[1]) && bounds.iter().all(|b| b.is_finite())
        );
        let mut cumulative = 0u64;
        for (bound, n) in bounds.iter().zip(counts) {
            cumulative = cumulative.saturating_add(*n);
            let _ = write!(self.out, "{name}_bucket");
            put_labels(&mut self.out, labels, Some(&float(*bound)));
            let _ = writeln!(self.out, " {cumulative}");
        }
        debug_assert!(count >= cumulative, "count below the buckets' total");
        let _ = write!(self.out, "{name}_bucket");
        put_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {count}");
        self.out.push_str(name);
        self.out.push_str("_sum");
        put_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", float(sum));
        self.out.push_str(name);
        self.out.push_str("_count");
        put_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {count}");
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// `{k="v",...}` (nothing for no labels), with `le` last when given.
fn put_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
    for (i, (k, v)) in all.enumerate() {
        debug_assert!(is_label_name(k), "bad label name {k:?}");
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        // Label values escape backslash, double quote and newline.
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    !s.starts_with("__")
        && b.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The buckets of myroute's latency histograms, in seconds (the spec's
/// "Metrics" section; `+Inf` is implied).
pub const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram over [`SECONDS_BUCKETS`], per-bucket counts as
/// [`Exposition::histogram`] takes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
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
            if let Some(n) = self.counts.get_mut(i) {
                *n = n.saturating_add(1);
            }
        }
        self.sum += secs;
        self.count = self.count.saturating_add(1);
    }

    /// Per-bucket counts, one per bound of [`SECONDS_BUCKETS`].
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Total of all observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes this histogram as a whole family.
    pub fn write(&self, e: &mut Exposition, name: &str, help: &str) {
        e.histogram(
            name,
            help,
            &[],
            &SECONDS_BUCKETS,
            &self.counts,
            self.sum,
            self.count,
        );
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
        e.sample(
            "myroute_bytes_total",
            &[("direction", "in")],
            12345678901234u64,
        );
        e.sample("myroute_bytes_total", &[("direction", "out")], 0usize);
        e.family(
            "myroute_uptime_seconds",
            "Seconds since start.",
            Kind::Gauge,
        );
        e.sample("myroute_uptime_seconds", &[], 12.5);
        e.family("myroute_x", "Escapes.", Kind::Gauge);
        e.sample(
            "myroute_x",
            &[("a", "q\"b\\s\nn"), ("b", "é")],
            f64::INFINITY,
        );
        e.sample("myroute_x", &[("a", "")], f64::NEG_INFINITY);
        e.sample("myroute_x", &[("a", "n")], f64::NAN);
        e.sample("myroute_x", &[("a", "w")], 1.0);
        e.sample("myroute_x", &[("a", "t")], true);
        e.sample("myroute_x", &[("a", "s")], -3i64);
        e.sample("myroute_x", &[("a", "f")], 0.0005);
        e.sample("myroute_x", &[("a", "g")], 1e21);
        e.sample("myroute_x", &[("a", "h")], 999999999999999900000.0);
        e.sample("myroute_x", &[("a", "i")], 0.0001);
        e.sample("myroute_x", &[("a", "j")], -9.5e-5);
        e.sample("myroute_x", &[("a", "k")], f64::MAX);
        e.sample("myroute_x", &[("a", "l")], -0.0);
        assert_eq!(
            e.as_str(),
            "# HELP myroute_info Build information.\n\
             # TYPE myroute_info gauge\n\
             myroute_info{version=\"0.1.0\"} 1\n\
             # HELP myroute_bytes_total Bytes relayed.\\nin: from clients \\\\ out: to them\n\
             # TYPE myroute_bytes_total counter\n\
             myroute_bytes_total{direction=\"in\"} 12345678901234\n\
             myroute_bytes_total{direction=\"out\"} 0\n\
             # HELP myroute_uptime_seconds Seconds since start.\n\
             # TYPE myroute_uptime_seconds gauge\n\
             myroute_uptime_seconds 12.5\n\
             # HELP myroute_x Escapes.\n\
             # TYPE myroute_x gauge\n\
             myroute_x{a=\"q\\\"b\\\\s\\nn\",b=\"é\"} +Inf\n\
             myroute_x{a=\"\"} -Inf\n\
             myroute_x{a=\"n\"} NaN\n\
             myroute_x{a=\"w\"} 1\n\
             myroute_x{a=\"t\"} 1\n\
             myroute_x{a=\"s\"} -3\n\
             myroute_x{a=\"f\"} 0.0005\n\
             myroute_x{a=\"g\"} 1e21\n\
             myroute_x{a=\"h\"} 999999999999999900000\n\
             myroute_x{a=\"i\"} 0.0001\n\
             myroute_x{a=\"j\"} -9.5e-5\n\
             myroute_x{a=\"k\"} 1.7976931348623157e308\n\
             myroute_x{a=\"l\"} -0\n"
        );
    }

    #[test]
    fn histograms() {
        let mut h = Histogram::new();
        for ms in [0u64, 1, 1, 3, 10, 700, 2_000, 60_000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 8);
        assert!((h.sum() - 62.715).abs() < 1e-9);
        assert_eq!(h.counts(), &[1, 2, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0]);
        let mut e = Exposition::new();
        h.write(
            &mut e,
            "myroute_handshake_seconds",
            "Accept to client verified.",
        );
        let text = e.into_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 15 + 2);
        assert_eq!(
            lines[0],
            "# HELP myroute_handshake_seconds Accept to client verified."
        );
        assert_eq!(lines[1], "# TYPE myroute_handshake_seconds histogram");
        assert_eq!(
            lines[2],
            "myroute_handshake_seconds_bucket{le=\"0.0005\"} 1"
        );
        assert_eq!(lines[3], "myroute_handshake_seconds_bucket{le=\"0.001\"} 3");
        assert_eq!(
            lines[4],
            "myroute_handshake_seconds_bucket{le=\"0.0025\"} 3"
        );
        assert_eq!(lines[12], "myroute_handshake_seconds_bucket{le=\"1\"} 6");
        assert_eq!(lines[13], "myroute_handshake_seconds_bucket{le=\"2.5\"} 7");
        assert_eq!(lines[15], "myroute_handshake_seconds_bucket{le=\"10\"} 7");
        assert_eq!(lines[16], "myroute_handshake_seconds_bucket{le=\"+Inf\"} 8");
        assert_eq!(lines[17], "myroute_handshake_seconds_sum 62.715");
        assert_eq!(lines[18], "myroute_handshake_seconds_count 8");
        assert!(text.ends_with('\n'));

        // Labels come before `le`; an empty histogram has zero everywhere.
        let mut e = Exposition::new();
        e.histogram("h", "H.", &[("pool", "p\"1")], &[0.5, 1.0], &[0, 0], 0.0, 0);
        e.histogram_series("h", &[("pool", "p2")], &[0.5, 1.0], &[1, 0], 0.25, 1);
        assert_eq!(
            e.as_str(),
            "# HELP h H.\n# TYPE h histogram\n\
             h_bucket{pool=\"p\\\"1\",le=\"0.5\"} 0\n\
             h_bucket{pool=\"p\\\"1\",le=\"1\"} 0\n\
             h_bucket{pool=\"p\\\"1\",le=\"+Inf\"} 0\n\
             h_sum{pool=\"p\\\"1\"} 0\n\
             h_count{pool=\"p\\\"1\"} 0\n\
             h_bucket{pool=\"p2\",le=\"0.5\"} 1\n\
             h_bucket{pool=\"p2\",le=\"1\"} 1\n\
             h_bucket{pool=\"p2\",le=\"+Inf\"} 1\n\
             h_sum{pool=\"p2\"} 0.25\n\
             h_count{pool=\"p2\"} 1\n"
        );
    }

    #[test]
    fn histogram_bounds_are_inclusive() {
        let mut h = Histogram::new();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_secs(10));
        h.observe(Duration::from_nanos(10_000_000_001));
        assert_eq!(h.counts()[0], 1);
        assert_eq!(h.counts()[13], 1);
        assert_eq!(h.counts().iter().sum::<u64>(), 2);
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn names() {
        assert!(
            is_metric_name("myroute_x:y_total") && is_metric_name("_a") && is_metric_name(":a")
        );
        assert!(!is_metric_name("") && !is_metric_name("1a") && !is_metric_name("a-b"));
        assert!(is_label_name("le") && is_label_name("_x1"));
        assert!(!is_label_name("__name__") && !is_label_name("a:b") && !is_label_name("9"));
    }
}
