//! The daemon's Prometheus metrics, kept with `prometheus-client` (the
//! Prometheus project's own Rust client) and rendered in the text
//! exposition format 0.0.4.
//!
//! [`Metrics`] lives on the daemon's thread, which records every event and
//! renders the text when the admin endpoint asks for it (see
//! [`crate::daemon::admin`]). Every series carries a `batch` label; a batch
//! appears in every per-batch family once any call has named it, and in the
//! last-run gauges once one of its runs has ended. The metric names and
//! labels are a stable interface: dashboards and alerts use them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::time::unix_seconds;
use crate::sys::process::ProcessStats;

/// The content type of the rendered text (Prometheus text format 0.0.4).
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds, in seconds, of the request duration histogram's buckets
/// (the `+Inf` bucket comes on top of these).
pub const DURATION_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The labels of the per-batch series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BatchLabels {
    batch: String,
}

/// The labels of `flagsd_runs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    batch: String,
    result: String,
}

/// The labels of `flagsd_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The labels of `flagsd_fleet_messages_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The labels of `flagsd_fleet_nodes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FleetLabels {
    fleet: String,
}

/// The labels of `flagsd_downloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    batch: String,
    outcome: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The daemon's metrics; see the module documentation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    downloads: Family<OutcomeLabels, Counter>,
    bytes: Family<BatchLabels, Counter>,
    durations: Family<BatchLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<BatchLabels, Gauge>,
    retries: Family<BatchLabels, Counter>,
    last_run_timestamp: Family<BatchLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    last_run_status: Family<BatchLabels, Gauge>,
    runs: Family<RunLabels, Counter>,
    schedule: Family<BatchLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    running: Family<BatchLabels, Gauge>,
    fleet_nodes: Family<FleetLabels, Gauge>,
    fleet_queued: Family<BatchLabels, Gauge>,
    fleet_in_flight: Family<BatchLabels, Gauge>,
    fleet_dropped: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family and no series yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let downloads = Family::default();
        registry.register("flagsd_downloads", "Codes finished, by batch and outcome", downloads.clone());
        let bytes = Family::default();
        registry.register("flagsd_downloaded_bytes", "Body bytes saved to disk", bytes.clone());
        let durations = Family::<_, _, fn() -> Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "flagsd_request_duration_seconds",
            "Duration of one request (attempt), in seconds",
            durations.clone(),
        );
        let in_flight = Family::default();
        registry.register("flagsd_requests_in_flight", "Requests in progress", in_flight.clone());
        let retries = Family::default();
        registry.register("flagsd_retries", "Retries scheduled", retries.clone());
        let last_run_timestamp = Family::default();
        registry.register(
            "flagsd_last_run_timestamp_seconds",
            "When the last run of the batch ended, in UNIX seconds",
            last_run_timestamp.clone(),
        );
        let last_run_status = Family::default();
        registry.register(
            "flagsd_last_run_exit_status",
            "Exit status of the last run of the batch (0 = success)",
            last_run_status.clone(),
        );
        let runs = Family::default();
        registry.register(
            "flagsd_runs",
            "Runs that ended, by batch and result (success, errors, cancelled, failed)",
            runs.clone(),
        );
        let schedule = Family::default();
        registry.register(
            "flagsd_batch_schedule_seconds",
            "The batch's schedule: seconds between its runs (only batches with `every`)",
            schedule.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        registry.register("flagsd_build_info", "Always 1; the label says which flagsd this is", build);
        registry.register_collector(Box::new(ProcessCollector));
        let running = Family::default();
        registry.register("flagsd_batch_running", "1 while a run of the batch is in progress, else 0", running.clone());
        let fleet_nodes = Family::default();
        registry.register("flagsd_fleet_nodes", "Nodes of the fleet with a live heartbeat", fleet_nodes.clone());
        let fleet_queued = Family::default();
        registry.register(
            "flagsd_fleet_codes_queued",
            "Codes queued in the fleet, not yet handed out",
            fleet_queued.clone(),
        );
        let fleet_in_flight = Family::default();
        registry.register(
            "flagsd_fleet_codes_in_flight",
            "Codes handed out to the fleet's nodes and not yet settled",
            fleet_in_flight.clone(),
        );
        let fleet_dropped = Family::default();
        registry.register(
            "flagsd_fleet_messages_dropped",
            "Messages from NATS this node dropped: malformed, foreign, duplicate, or of a run that ended",
            fleet_dropped.clone(),
        );
        Self {
            registry,
            downloads,
            bytes,
            durations,
            in_flight,
            retries,
            last_run_timestamp,
            last_run_status,
            runs,
            schedule,
            running,
            fleet_nodes,
            fleet_queued,
            fleet_in_flight,
            fleet_dropped,
        }
    }

    /// The labels of `batch`, with its series created in every per-batch
    /// family (so that a batch named once shows everywhere, at zero).
    fn batch(&self, batch: &str) -> BatchLabels {
        let labels = BatchLabels { batch: batch.to_owned() };
        let _ = self.bytes.get_or_create(&labels);
        let _ = self.durations.get_or_create(&labels);
        let _ = self.in_flight.get_or_create(&labels);
        let _ = self.retries.get_or_create(&labels);
        let _ = self.running.get_or_create(&labels);
        labels
    }

    /// Counts one finished code of `batch`. `outcome` is a stable kind name
    /// ([`crate::model::outcome::Outcome::kind`]: `"downloaded"`,
    /// `"not_found"`, `"http_error"`…); `bytes` is the size of the body
    /// saved, 0 if none.
    pub fn outcome(&mut self, batch: &str, outcome: &str, bytes: u64) {
        let labels = self.batch(batch);
        self.bytes.get_or_create(&labels).inc_by(bytes);
        let outcome = OutcomeLabels { batch: labels.batch, outcome: outcome.to_owned() };
        self.downloads.get_or_create(&outcome).inc();
    }

    /// An attempt (one request) of `batch` started: one more in flight.
    pub fn attempt_started(&mut self, batch: &str) {
        let labels = self.batch(batch);
        self.in_flight.get_or_create(&labels).inc();
    }

    /// An attempt of `batch` finished after `elapsed`: one fewer in flight
    /// (never below zero, even if the calls do not pair up), and the
    /// duration is observed.
    pub fn attempt_finished(&mut self, batch: &str, elapsed: Duration) {
        let labels = self.batch(batch);
        let in_flight = self.in_flight.get_or_create(&labels);
        if in_flight.get() > 0 {
            in_flight.dec();
        }
        self.durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// A retry of a code of `batch` was scheduled.
    pub fn retry(&mut self, batch: &str) {
        let labels = self.batch(batch);
        self.retries.get_or_create(&labels).inc();
    }

    /// A run of `batch` started.
    pub fn run_started(&mut self, batch: &str) {
        let labels = self.batch(batch);
        self.running.get_or_create(&labels).set(1);
    }

    /// A run of `batch` ended at `ended` with `exit_status` (the status
    /// `flagsd fetch` would have exited with) and `result` (`success`,
    /// `errors`, `cancelled` or `failed`: [`RunResult`]).
    pub fn run_finished(&mut self, batch: &str, ended: SystemTime, exit_status: i32, result: RunResult) {
        let labels = self.batch(batch);
        self.running.get_or_create(&labels).set(0);
        self.last_run_timestamp.get_or_create(&labels).set(unix_seconds(ended));
        self.last_run_status.get_or_create(&labels).set(i64::from(exit_status));
        let run = RunLabels { batch: labels.batch, result: result.as_str().to_owned() };
        self.runs.get_or_create(&run).inc();
    }

    /// The batches of the configuration in force (at start and after each
    /// reload): each appears in the per-batch families, and those with a
    /// schedule in `flagsd_batch_schedule_seconds` (a batch no longer
    /// scheduled leaves it).
    pub fn configured<'a>(&mut self, batches: impl IntoIterator<Item = (&'a str, Option<Duration>)>) {
        self.schedule.clear();
        for (batch, every) in batches {
            let labels = self.batch(batch);
            if let Some(every) = every {
                self.schedule.get_or_create(&labels).set(every.as_secs_f64());
            }
        }
    }

    /// What a fleet node last measured of its fleet: live nodes, and codes
    /// queued and in flight by batch.
    pub fn fleet(
        &mut self,
        fleet: &str,
        live_nodes: u64,
        queued: &BTreeMap<String, u64>,
        in_flight: &BTreeMap<String, u64>,
    ) {
        let labels = FleetLabels { fleet: fleet.to_owned() };
        self.fleet_nodes.get_or_create(&labels).set(i64::try_from(live_nodes).unwrap_or(i64::MAX));
        for (family, values) in [(&self.fleet_queued, queued), (&self.fleet_in_flight, in_flight)] {
            for (batch, value) in values {
                let labels = BatchLabels { batch: batch.clone() };
                family.get_or_create(&labels).set(i64::try_from(*value).unwrap_or(i64::MAX));
            }
        }
    }

    /// Whether a run of each batch is in progress in the fleet, as the
    /// fleet's records say (every node shows the same).
    pub fn fleet_running(&mut self, running: &BTreeMap<String, bool>) {
        for (batch, running) in running {
            let labels = self.batch(batch);
            self.running.get_or_create(&labels).set(i64::from(*running));
        }
    }

    /// The messages from NATS this node dropped so far, by reason.
    pub fn fleet_dropped(&mut self, counts: &[(&'static str, u64)]) {
        for (reason, count) in counts {
            let counter = self.fleet_dropped.get_or_create(&ReasonLabels { reason: (*reason).to_owned() });
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }

    /// The whole registry in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// How a run ended, as `flagsd_runs_total`'s `result` label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// Every code downloaded, unchanged or not found (status 0).
    Success,
    /// Every code has an outcome, some of them errors (status 1).
    Errors,
    /// Stopped before the end: a signal, `flagsd cancel`, the admin API.
    Cancelled,
    /// Ended by an error before or while it ran (status 3).
    Failed,
}

impl RunResult {
    /// The label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Errors => "errors",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// Prometheus' standard process metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, …), read from `/proc` at each scrape;
/// none where `/proc` cannot be read.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(stats) = ProcessStats::read() else { return Ok(()) };
        let cpu = "Total user and system CPU time spent in seconds";
        let cpu = encoder.encode_descriptor("process_cpu_seconds", cpu, None, MetricType::Counter)?;
        ConstCounter::new(stats.cpu_seconds).encode(cpu)?;
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", stats.resident_bytes as f64),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", stats.virtual_bytes as f64),
            ("process_open_fds", "Number of open file descriptors", stats.open_fds as f64),
            ("process_max_fds", "Maximum number of open file descriptors", stats.max_fds as f64),
            (
                "process_start_time_seconds",
                "Start time of the process since the UNIX epoch in seconds",
                stats.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use prometheus_parse::{Scrape, Value};

    use super::*;

    /// The families a scrape declares, by name, with their type.
    const FAMILIES: [(&str, &str); 10] = [
        ("flagsd_downloads_total", "counter"),
        ("flagsd_downloaded_bytes_total", "counter"),
        ("flagsd_request_duration_seconds", "histogram"),
        ("flagsd_requests_in_flight", "gauge"),
        ("flagsd_retries_total", "counter"),
        ("flagsd_last_run_timestamp_seconds", "gauge"),
        ("flagsd_last_run_exit_status", "gauge"),
        ("flagsd_batch_running", "gauge"),
        ("flagsd_runs_total", "counter"),
        ("flagsd_batch_schedule_seconds", "gauge"),
    ];

    /// Parses the rendered text with an independent parser of the format.
    fn scrape(metrics: &Metrics) -> Scrape {
        let text = metrics.render();
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The value of every sample of `name`, by its labels (`k=v,…`, sorted).
    fn samples(scrape: &Scrape, name: &str) -> BTreeMap<String, f64> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| {
                let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                labels.sort();
                let value = match &s.value {
                    Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                    Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                    Value::Summary(_) => f64::NAN,
                };
                (labels.join(","), value)
            })
            .collect()
    }

    #[test]
    fn every_family_is_declared_with_help_and_type() {
        // Before any batch is named, only the build and the process show.
        let fresh = scrape(&Metrics::new());
        assert!(
            fresh.samples.iter().all(|s| s.metric.starts_with("process_") || s.metric == "flagsd_build_info"),
            "{:?}",
            fresh.samples
        );
        let mut metrics = Metrics::new();
        metrics.outcome("daily", "downloaded", 10);
        metrics.run_finished("daily", UNIX_EPOCH + Duration::from_secs(5), 0, RunResult::Success);
        metrics.configured([("daily", Some(Duration::from_secs(60)))]);
        let text = metrics.render();
        for (name, kind) in FAMILIES {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "no TYPE for {name} in\n{text}");
            let help = text.lines().find(|l| l.starts_with(&format!("# HELP {name} "))).unwrap_or_default();
            assert!(help.len() > format!("# HELP {name} ").len(), "no HELP for {name} in\n{text}");
        }
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    }

    #[test]
    fn outcomes_and_bytes_add_up_by_batch() {
        let mut metrics = Metrics::default();
        metrics.outcome("weekly", "not_found", 0);
        metrics.outcome("daily", "downloaded", 1200);
        metrics.outcome("daily", "http_error", 0);
        metrics.outcome("daily", "downloaded", 34);
        metrics.outcome("daily", "connection_error", 0);
        let scrape = scrape(&metrics);
        let expected: BTreeMap<String, f64> = [
            ("batch=daily,outcome=connection_error", 1.0),
            ("batch=daily,outcome=downloaded", 2.0),
            ("batch=daily,outcome=http_error", 1.0),
            ("batch=weekly,outcome=not_found", 1.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(samples(&scrape, "flagsd_downloads_total"), expected);
        let bytes = samples(&scrape, "flagsd_downloaded_bytes_total");
        assert_eq!((bytes["batch=daily"], bytes["batch=weekly"]), (1234.0, 0.0));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let mut metrics = Metrics::new();
        for millis in [1, 5, 7, 300, 1000, 45_000] {
            metrics.attempt_started("daily");
            metrics.attempt_finished("daily", Duration::from_millis(millis));
        }
        let scrape = scrape(&metrics);
        let histogram = scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                Value::Histogram(buckets) if s.metric == "flagsd_request_duration_seconds" => Some(buckets.clone()),
                _ => None,
            })
            .expect("a histogram");
        let counts: Vec<(f64, f64)> = histogram.iter().map(|b| (b.less_than, b.count)).collect();
        let expected = [
            (0.005, 2.0), // 1 ms and 5 ms (the bound is inclusive)
            (0.01, 3.0),
            (0.025, 3.0),
            (0.05, 3.0),
            (0.1, 3.0),
            (0.25, 3.0),
            (0.5, 4.0),
            (1.0, 5.0),
            (2.5, 5.0),
            (5.0, 5.0),
            (10.0, 5.0),
            (30.0, 5.0),
            (f64::INFINITY, 6.0),
        ];
        assert_eq!(counts, expected);
        let text = metrics.render();
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"flagsd_request_duration_seconds_sum{batch="daily"} "#))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("a sum");
        assert!((sum - 46.313).abs() < 1e-9, "{sum}");
        assert!(text.contains("flagsd_request_duration_seconds_count{batch=\"daily\"} 6\n"), "{text}");
    }

    #[test]
    fn in_flight_goes_up_and_down_but_never_below_zero() {
        let mut metrics = Metrics::new();
        let in_flight = |m: &Metrics| samples(&scrape(m), "flagsd_requests_in_flight")["batch=daily"];
        metrics.attempt_started("daily");
        metrics.attempt_started("daily");
        metrics.attempt_started("daily");
        metrics.attempt_finished("daily", Duration::from_millis(10));
        assert_eq!(in_flight(&metrics), 2.0);
        for _ in 0..5 {
            metrics.attempt_finished("daily", Duration::from_millis(10));
        }
        assert_eq!(in_flight(&metrics), 0.0);
        metrics.attempt_started("daily");
        assert_eq!(in_flight(&metrics), 1.0);
        // A finish with no start still counts as an observation.
        assert!(metrics.render().contains("flagsd_request_duration_seconds_count{batch=\"daily\"} 6\n"));
    }

    #[test]
    fn retries_are_counted_per_batch() {
        let mut metrics = Metrics::new();
        metrics.retry("b");
        metrics.retry("a");
        metrics.retry("b");
        let retries = samples(&scrape(&metrics), "flagsd_retries_total");
        assert_eq!((retries["batch=a"], retries["batch=b"]), (1.0, 2.0));
    }

    #[test]
    fn runs_set_running_then_the_last_run_gauges() {
        let mut metrics = Metrics::new();
        metrics.run_started("daily");
        let s = scrape(&metrics);
        assert_eq!(samples(&s, "flagsd_batch_running")["batch=daily"], 1.0);
        // No run has finished yet: no last-run series.
        assert!(samples(&s, "flagsd_last_run_timestamp_seconds").is_empty());
        assert!(samples(&s, "flagsd_last_run_exit_status").is_empty());

        metrics.run_finished("daily", UNIX_EPOCH + Duration::from_millis(1_700_000_000_250), 1, RunResult::Errors);
        let s = scrape(&metrics);
        assert_eq!(samples(&s, "flagsd_batch_running")["batch=daily"], 0.0);
        assert_eq!(samples(&s, "flagsd_last_run_timestamp_seconds")["batch=daily"], 1_700_000_000.25);
        assert_eq!(samples(&s, "flagsd_last_run_exit_status")["batch=daily"], 1.0);

        metrics.run_started("daily");
        metrics.run_finished("daily", UNIX_EPOCH + Duration::from_secs(1_700_000_060), 0, RunResult::Success);
        let s = scrape(&metrics);
        assert_eq!(samples(&s, "flagsd_last_run_timestamp_seconds")["batch=daily"], 1_700_000_060.0);
        assert_eq!(samples(&s, "flagsd_last_run_exit_status")["batch=daily"], 0.0);
    }

    #[test]
    fn runs_are_counted_by_batch_and_result() {
        let mut metrics = Metrics::new();
        let end = UNIX_EPOCH + Duration::from_secs(1);
        metrics.run_finished("daily", end, 0, RunResult::Success);
        metrics.run_finished("daily", end, 1, RunResult::Errors);
        metrics.run_finished("daily", end, 1, RunResult::Errors);
        metrics.run_finished("weekly", end, 130, RunResult::Cancelled);
        metrics.run_finished("weekly", end, 3, RunResult::Failed);
        let expected: BTreeMap<String, f64> = [
            ("batch=daily,result=errors", 2.0),
            ("batch=daily,result=success", 1.0),
            ("batch=weekly,result=cancelled", 1.0),
            ("batch=weekly,result=failed", 1.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(samples(&scrape(&metrics), "flagsd_runs_total"), expected);
    }

    #[test]
    fn schedules_follow_the_configuration_in_force() {
        let mut metrics = Metrics::new();
        metrics.configured([("hourly", Some(Duration::from_secs(3600))), ("manual", None)]);
        let s = scrape(&metrics);
        let expected: BTreeMap<String, f64> = [("batch=hourly".to_owned(), 3600.0)].into();
        assert_eq!(samples(&s, "flagsd_batch_schedule_seconds"), expected);
        // The unscheduled batch is known to the per-batch families all the same.
        assert_eq!(samples(&s, "flagsd_batch_running")["batch=manual"], 0.0);
        // A reload: hourly is no longer scheduled, daily is.
        metrics.configured([("hourly", None), ("daily", Some(Duration::from_secs(86_400)))]);
        let expected: BTreeMap<String, f64> = [("batch=daily".to_owned(), 86_400.0)].into();
        assert_eq!(samples(&scrape(&metrics), "flagsd_batch_schedule_seconds"), expected);
    }

    #[test]
    fn build_and_process_metrics_are_prometheus_standard_ones() {
        let metrics = Metrics::new();
        let text = metrics.render();
        let s = scrape(&metrics);
        let build = samples(&s, "flagsd_build_info");
        assert_eq!(build, [(format!("version={}", env!("CARGO_PKG_VERSION")), 1.0)].into());
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
        for gauge in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {gauge} gauge\n")), "{gauge} in\n{text}");
            let value = samples(&s, gauge)[""];
            assert!(value > 0.0, "{gauge} = {value}");
        }
        let (open, max) = (samples(&s, "process_open_fds")[""], samples(&s, "process_max_fds")[""]);
        assert!(open < max, "{open} of {max}");
        // A test process may not have used a whole clock tick yet: 0 is fine.
        assert!(samples(&s, "process_cpu_seconds_total")[""] >= 0.0);
    }

    #[test]
    fn a_batch_named_once_appears_in_every_per_batch_family() {
        let mut metrics = Metrics::new();
        metrics.run_started("only");
        let s = scrape(&metrics);
        for name in [
            "flagsd_downloaded_bytes_total",
            "flagsd_requests_in_flight",
            "flagsd_retries_total",
            "flagsd_batch_running",
            "flagsd_request_duration_seconds",
        ] {
            assert_eq!(samples(&s, name).len(), 1, "{name} in\n{}", metrics.render());
        }
        assert!(samples(&s, "flagsd_downloads_total").is_empty());
    }

    #[test]
    fn label_values_are_escaped() {
        let mut metrics = Metrics::new();
        metrics.retry("a\\b\"c\nd");
        let text = metrics.render();
        assert!(text.contains(r#"flagsd_retries_total{batch="a\\b\"c\nd"} 1"#), "{text}");
    }

    #[test]
    fn fleet_gauges_show_nodes_and_codes_by_batch() {
        let mut metrics = Metrics::new();
        let queued = BTreeMap::from([("daily".to_owned(), 600)]);
        let in_flight = BTreeMap::from([("daily".to_owned(), 76)]);
        metrics.fleet("flags", 3, &queued, &in_flight);
        let s = scrape(&metrics);
        assert_eq!(samples(&s, "flagsd_fleet_nodes")["fleet=flags"], 3.0);
        assert_eq!(samples(&s, "flagsd_fleet_codes_queued")["batch=daily"], 600.0);
        assert_eq!(samples(&s, "flagsd_fleet_codes_in_flight")["batch=daily"], 76.0);
    }
}
