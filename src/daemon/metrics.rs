//! The daemon's Prometheus metrics, rendered in the text exposition format
//! (version 0.0.4).
//!
//! [`Metrics`] is a plain registry: no locks and no atomics, because it lives
//! on the daemon's single thread, which records every event and renders the
//! text when the admin endpoint asks for it (see [`crate::daemon::admin`]). Every
//! series carries a `batch` label; a batch appears in the output once any
//! call has named it. Series are kept in sorted maps, so the output is stable
//! from one scrape to the next and easy to compare in tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds, in seconds, of the request duration histogram's buckets
/// (the `+Inf` bucket comes on top of these).
pub const DURATION_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Observations of one histogram: per-bucket counts (not cumulative; the
/// sums are taken when rendering), total count and sum.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations that fell in each bucket of [`DURATION_BUCKETS`] and in
    /// no lower one.
    buckets: [u64; DURATION_BUCKETS.len()],
    /// All observations, including those above the last bound.
    count: u64,
    /// Sum of the observed values, in seconds.
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Everything known about one batch.
#[derive(Debug, Clone, Default)]
struct BatchMetrics {
    /// Finished codes by outcome kind.
    outcomes: BTreeMap<&'static str, u64>,
    /// Body bytes saved.
    bytes: u64,
    /// Durations of finished attempts.
    durations: Histogram,
    /// Attempts started and not yet finished.
    in_flight: u64,
    /// Retries scheduled.
    retries: u64,
    /// End time (UNIX seconds) and exit status of the last finished run.
    last_run: Option<(f64, i32)>,
    /// Whether a run is in progress.
    running: bool,
}

/// The daemon's metrics, by batch; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    batches: BTreeMap<String, BatchMetrics>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn batch(&mut self, batch: &str) -> &mut BatchMetrics {
        self.batches.entry(batch.to_owned()).or_default()
    }

    /// Counts one finished code of `batch`. `outcome` is a stable kind name
    /// ([`crate::model::outcome::Outcome::kind`]: `"downloaded"`, `"not_found"`,
    /// `"http_error"`…); `bytes` is the size of the body saved, 0 if none.
    pub fn outcome(&mut self, batch: &str, outcome: &'static str, bytes: u64) {
        let metrics = self.batch(batch);
        *metrics.outcomes.entry(outcome).or_default() += 1;
        metrics.bytes = metrics.bytes.saturating_add(bytes);
    }

    /// An attempt (one request) of `batch` started: one more in flight.
    pub fn attempt_started(&mut self, batch: &str) {
        let metrics = self.batch(batch);
        metrics.in_flight = metrics.in_flight.saturating_add(1);
    }

    /// An attempt of `batch` finished after `elapsed`: one fewer in flight
    /// (never below zero, even if the calls do not pair up), and the
    /// duration is observed.
    pub fn attempt_finished(&mut self, batch: &str, elapsed: Duration) {
        let metrics = self.batch(batch);
        metrics.in_flight = metrics.in_flight.saturating_sub(1);
        metrics.durations.observe(elapsed.as_secs_f64());
    }

    /// A retry of a code of `batch` was scheduled.
    pub fn retry(&mut self, batch: &str) {
        let metrics = self.batch(batch);
        metrics.retries = metrics.retries.saturating_add(1);
    }

    /// A run of `batch` started.
    pub fn run_started(&mut self, batch: &str) {
        self.batch(batch).running = true;
    }

    /// A run of `batch` ended at `ended` with `exit_status` (the status
    /// `flagsd fetch` would have exited with).
    pub fn run_finished(&mut self, batch: &str, ended: SystemTime, exit_status: i32) {
        let seconds = match ended.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        };
        let metrics = self.batch(batch);
        metrics.running = false;
        metrics.last_run = Some((seconds, exit_status));
    }

    /// The whole registry in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();

        family(&mut out, "flagsd_downloads_total", "counter", "Codes finished, by batch and outcome.");
        for (batch, m) in &self.batches {
            for (outcome, count) in &m.outcomes {
                sample(&mut out, "flagsd_downloads_total", &[("batch", batch), ("outcome", outcome)], *count);
            }
        }

        family(&mut out, "flagsd_downloaded_bytes_total", "counter", "Body bytes saved to disk.");
        for (batch, m) in &self.batches {
            sample(&mut out, "flagsd_downloaded_bytes_total", &[("batch", batch)], m.bytes);
        }

        let name = "flagsd_request_duration_seconds";
        family(&mut out, name, "histogram", "Duration of one request (attempt), in seconds.");
        for (batch, m) in &self.batches {
            let h = &m.durations;
            let mut cumulative = 0;
            for (bound, count) in DURATION_BUCKETS.iter().zip(h.buckets) {
                cumulative += count;
                let le = float(*bound);
                sample(&mut out, &format!("{name}_bucket"), &[("batch", batch), ("le", &le)], cumulative);
            }
            sample(&mut out, &format!("{name}_bucket"), &[("batch", batch), ("le", "+Inf")], h.count);
            sample(&mut out, &format!("{name}_sum"), &[("batch", batch)], float(h.sum));
            sample(&mut out, &format!("{name}_count"), &[("batch", batch)], h.count);
        }

        family(&mut out, "flagsd_requests_in_flight", "gauge", "Requests in progress.");
        for (batch, m) in &self.batches {
            sample(&mut out, "flagsd_requests_in_flight", &[("batch", batch)], m.in_flight);
        }

        family(&mut out, "flagsd_retries_total", "counter", "Retries scheduled.");
        for (batch, m) in &self.batches {
            sample(&mut out, "flagsd_retries_total", &[("batch", batch)], m.retries);
        }

        let name = "flagsd_last_run_timestamp_seconds";
        family(&mut out, name, "gauge", "When the last run of the batch ended, in UNIX seconds.");
        for (batch, m) in &self.batches {
            if let Some((ended, _)) = m.last_run {
                sample(&mut out, name, &[("batch", batch)], float(ended));
            }
        }

        let name = "flagsd_last_run_exit_status";
        family(&mut out, name, "gauge", "Exit status of the last run of the batch (0 = success).");
        for (batch, m) in &self.batches {
            if let Some((_, status)) = m.last_run {
                sample(&mut out, name, &[("batch", batch)], status);
            }
        }

        family(&mut out, "flagsd_batch_running", "gauge", "1 while a run of the batch is in progress, else 0.");
        for (batch, m) in &self.batches {
            sample(&mut out, "flagsd_batch_running", &[("batch", batch)], u8::from(m.running));
        }

        out
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family. The help texts
/// are constants of this module, free of `\` and line breaks.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line: `name{label="value",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Appends `value` escaped as the format wants label values: backslash,
/// double quote and line feed as `\\`, `\"` and `\n`.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as the format writes it: `+Inf`, `-Inf`, `NaN`, or a plain
/// decimal (Rust never uses an exponent here, which Prometheus accepts).
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines (no comments) of `text` whose metric name is `name`
    /// exactly, labels included.
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| line.split(['{', ' ']).next() == Some(name))
            .collect()
    }

    const FAMILIES: [(&str, &str); 8] = [
        ("flagsd_downloads_total", "counter"),
        ("flagsd_downloaded_bytes_total", "counter"),
        ("flagsd_request_duration_seconds", "histogram"),
        ("flagsd_requests_in_flight", "gauge"),
        ("flagsd_retries_total", "counter"),
        ("flagsd_last_run_timestamp_seconds", "gauge"),
        ("flagsd_last_run_exit_status", "gauge"),
        ("flagsd_batch_running", "gauge"),
    ];

    #[test]
    fn an_empty_registry_prints_every_family_without_series() {
        let text = Metrics::new().render();
        let mut expected = String::new();
        for (name, kind) in FAMILIES {
            let help = text
                .lines()
                .find(|line| line.starts_with(&format!("# HELP {name} ")))
                .unwrap_or_else(|| panic!("no HELP for {name} in\n{text}"));
            expected.push_str(&format!("{help}\n# TYPE {name} {kind}\n"));
        }
        assert_eq!(text, expected);
    }

    #[test]
    fn every_family_has_help_then_type_in_order() {
        let mut metrics = Metrics::new();
        metrics.outcome("daily", "downloaded", 10);
        metrics.run_finished("daily", UNIX_EPOCH + Duration::from_secs(5), 0);
        let text = metrics.render();
        let comments: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(comments.len(), 2 * FAMILIES.len(), "{text}");
        for ((name, kind), pair) in FAMILIES.iter().zip(comments.chunks(2)) {
            assert!(pair[0].starts_with(&format!("# HELP {name} ")), "{pair:?}");
            assert!(pair[0].len() > format!("# HELP {name} ").len(), "empty help: {pair:?}");
            assert_eq!(pair[1], format!("# TYPE {name} {kind}"));
        }
        // Samples come after their own family's comments.
        let position = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing in\n{text}"));
        assert!(position("# TYPE flagsd_downloads_total") < position("flagsd_downloads_total{"));
        assert!(position("flagsd_downloads_total{") < position("# HELP flagsd_downloaded_bytes_total"));
    }

    #[test]
    fn outcomes_and_bytes_add_up_sorted_by_labels() {
        let mut metrics = Metrics::default();
        metrics.outcome("weekly", "not_found", 0);
        metrics.outcome("daily", "downloaded", 1200);
        metrics.outcome("daily", "http_error", 0);
        metrics.outcome("daily", "downloaded", 34);
        metrics.outcome("daily", "connection_error", 0);
        let text = metrics.render();
        assert_eq!(
            samples(&text, "flagsd_downloads_total"),
            [
                r#"flagsd_downloads_total{batch="daily",outcome="connection_error"} 1"#,
                r#"flagsd_downloads_total{batch="daily",outcome="downloaded"} 2"#,
                r#"flagsd_downloads_total{batch="daily",outcome="http_error"} 1"#,
                r#"flagsd_downloads_total{batch="weekly",outcome="not_found"} 1"#,
            ]
        );
        assert_eq!(
            samples(&text, "flagsd_downloaded_bytes_total"),
            [
                r#"flagsd_downloaded_bytes_total{batch="daily"} 1234"#,
                r#"flagsd_downloaded_bytes_total{batch="weekly"} 0"#
            ]
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_is_the_count() {
        let mut metrics = Metrics::new();
        for millis in [1, 5, 7, 300, 1000, 45_000] {
            metrics.attempt_started("daily");
            metrics.attempt_finished("daily", Duration::from_millis(millis));
        }
        let text = metrics.render();
        let b = |le: &str, n: u64| format!(r#"flagsd_request_duration_seconds_bucket{{batch="daily",le="{le}"}} {n}"#);
        let expected = [
            b("0.005", 2), // 1 ms and 5 ms (the bound is inclusive)
            b("0.01", 3),
            b("0.025", 3),
            b("0.05", 3),
            b("0.1", 3),
            b("0.25", 3),
            b("0.5", 4),
            b("1", 5),
            b("2.5", 5),
            b("5", 5),
            b("10", 5),
            b("30", 5),
            b("+Inf", 6),
        ];
        assert_eq!(samples(&text, "flagsd_request_duration_seconds_bucket"), expected);
        assert_eq!(
            samples(&text, "flagsd_request_duration_seconds_count"),
            [r#"flagsd_request_duration_seconds_count{batch="daily"} 6"#]
        );
        let sum = samples(&text, "flagsd_request_duration_seconds_sum");
        assert_eq!(sum.len(), 1);
        let value: f64 = sum[0].rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number");
        assert!((value - 46.313).abs() < 1e-9, "{}", sum[0]);
        assert!(sum[0].starts_with(r#"flagsd_request_duration_seconds_sum{batch="daily"} "#));
    }

    #[test]
    fn a_batch_without_attempts_has_an_empty_histogram() {
        let mut metrics = Metrics::new();
        metrics.retry("quiet");
        let text = metrics.render();
        let buckets = samples(&text, "flagsd_request_duration_seconds_bucket");
        assert_eq!(buckets.len(), DURATION_BUCKETS.len() + 1);
        assert!(buckets.iter().all(|line| line.ends_with(" 0")), "{buckets:?}");
        assert_eq!(
            samples(&text, "flagsd_request_duration_seconds_sum"),
            [r#"flagsd_request_duration_seconds_sum{batch="quiet"} 0"#]
        );
    }

    #[test]
    fn in_flight_goes_up_and_down_but_never_below_zero() {
        let mut metrics = Metrics::new();
        metrics.attempt_started("daily");
        metrics.attempt_started("daily");
        metrics.attempt_started("daily");
        metrics.attempt_finished("daily", Duration::from_millis(10));
        assert_eq!(
            samples(&metrics.render(), "flagsd_requests_in_flight"),
            [r#"flagsd_requests_in_flight{batch="daily"} 2"#]
        );
        for _ in 0..5 {
            metrics.attempt_finished("daily", Duration::from_millis(10));
        }
        assert_eq!(
            samples(&metrics.render(), "flagsd_requests_in_flight"),
            [r#"flagsd_requests_in_flight{batch="daily"} 0"#]
        );
        metrics.attempt_started("daily");
        assert_eq!(
            samples(&metrics.render(), "flagsd_requests_in_flight"),
            [r#"flagsd_requests_in_flight{batch="daily"} 1"#]
        );
        // A finish with no start still counts as an observation.
        assert!(metrics.render().contains(r#"flagsd_request_duration_seconds_count{batch="daily"} 6"#));
    }

    #[test]
    fn retries_are_counted_per_batch() {
        let mut metrics = Metrics::new();
        metrics.retry("b");
        metrics.retry("a");
        metrics.retry("b");
        assert_eq!(
            samples(&metrics.render(), "flagsd_retries_total"),
            [r#"flagsd_retries_total{batch="a"} 1"#, r#"flagsd_retries_total{batch="b"} 2"#]
        );
    }

    #[test]
    fn runs_set_running_then_the_last_run_gauges() {
        let mut metrics = Metrics::new();
        metrics.run_started("daily");
        let text = metrics.render();
        assert_eq!(samples(&text, "flagsd_batch_running"), [r#"flagsd_batch_running{batch="daily"} 1"#]);
        // No run has finished yet: no last-run series.
        assert!(samples(&text, "flagsd_last_run_timestamp_seconds").is_empty(), "{text}");
        assert!(samples(&text, "flagsd_last_run_exit_status").is_empty(), "{text}");

        metrics.run_finished("daily", UNIX_EPOCH + Duration::from_millis(1_700_000_000_250), 1);
        let text = metrics.render();
        assert_eq!(samples(&text, "flagsd_batch_running"), [r#"flagsd_batch_running{batch="daily"} 0"#]);
        assert_eq!(
            samples(&text, "flagsd_last_run_timestamp_seconds"),
            [r#"flagsd_last_run_timestamp_seconds{batch="daily"} 1700000000.25"#]
        );
        assert_eq!(samples(&text, "flagsd_last_run_exit_status"), [r#"flagsd_last_run_exit_status{batch="daily"} 1"#]);

        metrics.run_started("daily");
        metrics.run_finished("daily", UNIX_EPOCH + Duration::from_secs(1_700_000_060), 0);
        let text = metrics.render();
        assert_eq!(
            samples(&text, "flagsd_last_run_timestamp_seconds"),
            [r#"flagsd_last_run_timestamp_seconds{batch="daily"} 1700000060"#]
        );
        assert_eq!(samples(&text, "flagsd_last_run_exit_status"), [r#"flagsd_last_run_exit_status{batch="daily"} 0"#]);
    }

    #[test]
    fn a_batch_named_once_appears_in_every_per_batch_family() {
        let mut metrics = Metrics::new();
        metrics.run_started("only");
        let text = metrics.render();
        for name in [
            "flagsd_downloaded_bytes_total",
            "flagsd_requests_in_flight",
            "flagsd_retries_total",
            "flagsd_batch_running",
        ] {
            assert_eq!(samples(&text, name).len(), 1, "{name} in\n{text}");
        }
        assert_eq!(samples(&text, "flagsd_request_duration_seconds_count").len(), 1);
        assert!(samples(&text, "flagsd_downloads_total").is_empty());
    }

    #[test]
    fn label_values_are_escaped() {
        let mut metrics = Metrics::new();
        metrics.retry("a\\b\"c\nd");
        assert_eq!(
            samples(&metrics.render(), "flagsd_retries_total"),
            [r#"flagsd_retries_total{batch="a\\b\"c\nd"} 1"#]
        );
    }

    #[test]
    fn floats_use_the_format_spelling() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.005), "0.005");
        assert_eq!(float(-2.5), "-2.5");
    }
}
