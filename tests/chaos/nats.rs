//! The harness's own NATS client: it forges messages on the fleet's
//! subjects, deletes buckets, and reads the streams raw to check what the
//! nodes did. It is a plain async-nats client, not a `Fleet`: joining a
//! fleet creates whatever stream or bucket is missing, and the harness must
//! not repair what the nodes are meant to repair themselves. (The checker
//! joins the fleet with the library only once every stream and bucket is
//! back.)
//!
//! Every forged message carries the header [`FORGED`], which no node reads
//! or writes, so that the checker tells the nodes' messages from the
//! forger's without trusting the rules the nodes apply.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use flagsd::fleet::messages::FleetRun;
use flagsd::fleet::names::{last_key, message_id, run_token};
use flagsd::model::codes::{CountryCode, every_code};
use futures_util::StreamExt as _;
use serde_json::json;

use crate::harness::FLEET;
use crate::schedule::{Forgery, Rng};

/// The header that marks a forged message.
pub const FORGED: &str = "Chaos-Forged";

/// How long one JetStream request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a fault that talks to NATS keeps trying (NATS may be
/// restarting when it fires).
const FAULT_PATIENCE: Duration = Duration::from_secs(20);

/// A message of a run's outcome stream, as stored.
#[derive(Debug, Clone)]
pub struct RawOutcome {
    /// The last token of its subject (the publishing node, unless forged).
    pub node: String,
    /// The stream sequence.
    pub sequence: u64,
    /// The payload.
    pub payload: Bytes,
    /// Whether the forger published it.
    pub forged: bool,
}

/// What a burst of forgeries aims at: the running run, the previous run,
/// the batch's codes.
pub struct Target<'a> {
    /// The batch (its subjects).
    pub batch: &'a str,
    /// The batch's codes.
    pub codes: &'a [CountryCode],
    /// The running run's id and nonce.
    pub current: (i64, String),
    /// The previous run's id and nonce, if there was one.
    pub previous: Option<(i64, String)>,
}

/// The harness's connection; see the module documentation.
pub struct Nats {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
}

/// `error`'s text and its sources'.
fn chain(error: &dyn std::error::Error) -> String {
    crate::natsd::error_chain(error)
}

impl Nats {
    /// Connects to `url` (which answers now); the client reconnects by
    /// itself when the server restarts on the same port.
    pub fn connect(url: &str) -> Self {
        // A worker thread of its own keeps the connection served (pings,
        // reconnections) between the harness's calls.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let js = runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .name("chaos-harness")
                .connect(url)
                .await
                .unwrap_or_else(|e| panic!("the harness cannot connect to NATS at {url}: {}", chain(&e)));
            jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client)
        });
        Self { runtime, js }
    }

    /// Runs `future` on the harness's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// `batch`'s newest run, as `last.{batch}` of the runs bucket holds it
    /// (`None` when it is missing or unreadable).
    pub fn last_run(&self, batch: &str) -> Result<Option<FleetRun>, String> {
        self.block_on(async {
            let bucket = self.js.get_key_value(format!("{FLEET}_runs")).await.map_err(|e| chain(&e))?;
            let value = bucket.get(last_key(batch)).await.map_err(|e| chain(&e))?;
            Ok(value.filter(|v| !v.is_empty()).and_then(|v| serde_json::from_slice(&v).ok()))
        })
    }

    /// Writes `run` under `key` of the runs bucket, or deletes the key
    /// (what a fleet that lost its records and started a new run holds).
    pub fn set_run_entry(&self, key: &str, run: Option<&FleetRun>) -> Result<(), String> {
        self.block_on(async {
            let bucket = self.js.get_key_value(format!("{FLEET}_runs")).await.map_err(|e| chain(&e))?;
            match run {
                Some(run) => {
                    let value = serde_json::to_vec(run).map_err(|e| e.to_string())?;
                    bucket.put(key, value.into()).await.map(drop).map_err(|e| chain(&e))
                }
                None => bucket.delete(key).await.map_err(|e| chain(&e)),
            }
        })
    }

    /// The streams and buckets of the fleet that do not exist (or do not
    /// answer).
    pub fn missing(&self) -> Vec<String> {
        self.block_on(async {
            let mut missing = Vec::new();
            for stream in ["work", "outcomes"].map(|s| format!("{FLEET}_{s}")) {
                if self.js.get_stream(&stream).await.is_err() {
                    missing.push(stream);
                }
            }
            for bucket in ["runs", "ticks", "files", "names", "nodes"].map(|b| format!("{FLEET}_{b}")) {
                if self.js.get_key_value(&bucket).await.is_err() {
                    missing.push(bucket);
                }
            }
            missing
        })
    }

    /// How many messages the work-queue stream holds.
    pub fn work_left(&self) -> Result<u64, String> {
        self.block_on(async {
            let mut stream = self.js.get_stream(format!("{FLEET}_work")).await.map_err(|e| chain(&e))?;
            Ok(stream.info().await.map_err(|e| chain(&e))?.state.messages)
        })
    }

    /// Every work item queued for run `token` of `batch`: its subject and
    /// payload, read without being acknowledged (they stay queued).
    pub fn work_items(&self, batch: &str, token: &str) -> Result<Vec<(String, Bytes)>, String> {
        self.block_on(async {
            let stream = self.js.get_stream(format!("{FLEET}_work")).await.map_err(|e| chain(&e))?;
            let filter_subject = format!("{FLEET}.work.{batch}.{token}.*");
            let config = pull::Config { filter_subject, ack_wait: Duration::from_secs(60), ..Default::default() };
            let consumer = stream.create_consumer(config).await.map_err(|e| chain(&e))?;
            let pending = consumer.cached_info().num_pending as usize;
            let mut messages = consumer.fetch().max_messages(pending).messages().await.map_err(|e| chain(&e))?;
            let mut items = Vec::new();
            while items.len() < pending {
                match messages.next().await {
                    Some(Ok(message)) => items.push((message.subject.to_string(), message.payload.clone())),
                    Some(Err(e)) => return Err(chain(&*e)),
                    None => break,
                }
            }
            Ok(items)
        })
    }

    /// Every message on the outcome subjects of run `token`, in stream order.
    pub fn outcomes(&self, token: &str) -> Result<Vec<RawOutcome>, String> {
        self.block_on(async {
            let stream = self.js.get_stream(format!("{FLEET}_outcomes")).await.map_err(|e| chain(&e))?;
            let filter = format!("{FLEET}.outcomes.{token}.*");
            let mut subjects = stream.info_with_subjects(&filter).await.map_err(|e| chain(&e))?;
            let mut expected = 0;
            while let Some(item) = subjects.next().await {
                expected += item.map_err(|e| chain(&e))?.1;
            }
            if expected == 0 {
                return Ok(Vec::new());
            }
            let config = pull::OrderedConfig { filter_subject: filter.clone(), ..Default::default() };
            let consumer = stream.create_consumer(config).await.map_err(|e| chain(&e))?;
            let mut messages = consumer.messages().await.map_err(|e| chain(&e))?;
            let mut found = Vec::new();
            while found.len() < expected {
                let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
                let message = match next {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(e))) => return Err(chain(&e)),
                    Ok(None) | Err(_) => return Err(format!("{} of {expected} outcomes read", found.len())),
                };
                let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
                let node = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
                let forged = message.headers.as_ref().is_some_and(|h| h.get(FORGED).is_some());
                found.push(RawOutcome { node, sequence, payload: message.payload.clone(), forged });
            }
            Ok(found)
        })
    }

    /// Publishes `payload` on `subject` through JetStream with `headers`,
    /// trying again while NATS is away; an error after [`FAULT_PATIENCE`].
    fn publish(&self, subject: String, headers: HeaderMap, payload: Bytes) -> Result<(), String> {
        let deadline = Instant::now() + FAULT_PATIENCE;
        self.block_on(async {
            loop {
                let sent =
                    self.js.publish_with_headers(Subject::from(subject.clone()), headers.clone(), payload.clone());
                let outcome = match sent.await {
                    Ok(ack) => ack.await.map(drop).map_err(|e| chain(&e)),
                    Err(e) => Err(chain(&e)),
                };
                match outcome {
                    Ok(()) => return Ok(()),
                    Err(e) if Instant::now() >= deadline => return Err(format!("cannot publish on {subject}: {e}")),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
    }

    /// Deletes bucket `name`, trying again while NATS is away (a bucket
    /// already gone is deleted).
    pub fn delete_bucket(&self, name: &str) -> Result<(), String> {
        let deadline = Instant::now() + FAULT_PATIENCE;
        self.block_on(async {
            loop {
                match self.js.delete_key_value(name).await.map_err(|e| chain(&e)) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.contains("stream not found") => return Ok(()),
                    Err(e) if Instant::now() >= deadline => return Err(format!("cannot delete {name}: {e}")),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
    }

    /// Publishes the messages of `forgery` aimed at `target`, codes chosen
    /// by `rng`; what was published, one line a message.
    pub fn forge(&self, forgery: Forgery, target: &Target<'_>, rng: &mut Rng) -> Result<Vec<String>, String> {
        let (id, nonce) = &target.current;
        let token = run_token(*id, nonce);
        let other_nonce = format!("{:012x}", rng.next_u64() & 0xffff_ffff_ffff);
        let foreign = [run_token(id + 1000, nonce), run_token(*id, &other_nonce)];
        let code = rng.pick(target.codes);
        let outside = every_code().into_iter().filter(|c| !target.codes.contains(c)).collect::<Vec<_>>();
        // Work items of one code, on a subject that says so.
        let work = |run: &str| format!("{FLEET}.work.{}.{run}.1", target.batch);
        // Outcomes come in batches, on a subject a node: a forger's.
        let outcome = |run: &str, _code: &str| format!("{FLEET}.outcomes.{run}.forger");
        let item = |code: &str| Bytes::from(json!({ "codes": [code] }).to_string());
        let result = |code: &str, kind: &str, message: Option<String>| {
            let value = json!([{
                "code": code, "outcome": kind, "status": 200, "message": message, "attempts": 1,
                "bytes": 1, "file": null, "url": "http://127.0.0.1:9/forged", "node": "forger",
            }]);
            Bytes::from(value.to_string())
        };
        let garbage = Bytes::from_static(b"\xff\x00{not json");
        let mut messages: Vec<(String, Option<String>, Bytes)> = Vec::new();
        match forgery {
            Forgery::WorkNotJson => messages.push((work(&token), None, garbage)),
            Forgery::WorkOversize => {
                let padded = json!({ "codes": [code.as_str()], "pad": "x".repeat(400) }).to_string();
                messages.push((work(&token), None, Bytes::from(padded)));
            }
            Forgery::WorkCodeNotInRun => {
                let stranger = rng.pick(&outside);
                messages.push((work(&token), None, item(stranger.as_str())));
            }
            Forgery::WorkForeignRun => {
                for run in foreign.iter().map(String::as_str).chain(["not-a-run-token"]) {
                    messages.push((work(run), None, item(code.as_str())));
                }
            }
            Forgery::WorkReplay => {
                let (id, nonce) = target.previous.as_ref().ok_or("a replay needs a previous run")?;
                let previous = run_token(*id, nonce);
                let id = message_id(&previous, &[code]);
                messages.push((work(&previous), Some(id), item(code.as_str())));
            }
            Forgery::OutcomeNotJson => messages.push((outcome(&token, code.as_str()), None, garbage)),
            Forgery::OutcomeOversize => {
                // Larger than any batch a node reads (512 KiB).
                let big = result(code.as_str(), "downloaded", Some("x".repeat(600 * 1024)));
                messages.push((outcome(&token, code.as_str()), None, big));
            }
            Forgery::OutcomeCodeNotInRun => {
                let stranger = rng.pick(&outside);
                let forged = result(stranger.as_str(), "downloaded", None);
                messages.push((outcome(&token, stranger.as_str()), None, forged));
            }
            Forgery::OutcomeForeignRun => {
                for run in &foreign {
                    messages.push((outcome(run, code.as_str()), None, result(code.as_str(), "downloaded", None)));
                }
            }
            Forgery::OutcomeWrongCode => {
                // A batch entry whose code is not a country code.
                let bad = format!("{}1", code.as_str());
                messages.push((outcome(&token, code.as_str()), None, result(&bad, "downloaded", None)));
            }
            Forgery::OutcomeUnknownKind => {
                messages.push((outcome(&token, code.as_str()), None, result(code.as_str(), "exploded", None)));
            }
        }
        let mut published = Vec::new();
        for (subject, id, payload) in messages {
            let mut headers = HeaderMap::new();
            headers.insert(FORGED, forgery.label());
            if let Some(id) = &id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            let size = payload.len();
            self.publish(subject.clone(), headers, payload)?;
            published.push(format!("{} on {subject} ({size} bytes)", forgery.label()));
        }
        Ok(published)
    }
}
