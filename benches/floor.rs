//! The floor under issue 16's CPU target: what the same 676 requests cost
//! with the least client that can make them, on this machine.
//!
//! 100 tasks on a tokio runtime with one thread per core, each taking the
//! next URL from a shared counter: no actors, no timeouts, no reports.
//! Three clients, so that each layer's cost shows:
//!
//! - hyper's own HTTP/1.1 connections (the library under reqwest), one per
//!   task, bodies read and dropped;
//! - the same, bodies saved as flagsd saves them (a temporary file, one
//!   write, a rename over the target);
//! - one reqwest client shared by the tasks (as flagsd's thread shares
//!   one), bodies saved the same way.
//!
//! It prints the median wall time and CPU time (user + system, from
//! `getrusage`) per round of 676 URLs, and CPU time per URL, for comparison
//! with `flagsd fetch -e -m 100` against the same server
//! ([docs/benchmarks.md](../docs/benchmarks.md)).
//!
//! `FLAGSD_FLOOR_URL=http://127.0.0.1:PORT/flags cargo bench --bench floor`
//! (nginx or `flagsd testserver`); `FLAGSD_BENCH_DIR` for the files
//! (default `/dev/shm`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 100;
const ROUNDS: usize = 20;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The 676 paths `/flags/aa/aa.gif` to `/flags/zz/zz.gif` under `base_path`.
fn paths(base_path: &str) -> Vec<String> {
    let letters = b'a'..=b'z';
    letters
        .clone()
        .flat_map(|a| letters.clone().map(move |b| (char::from(a), char::from(b))))
        .map(|(a, b)| format!("{base_path}/{a}{b}/{a}{b}.gif"))
        .collect()
}

/// One connection: requests the next path until none is left. Returns the
/// number of bodies saved.
async fn connection(
    address: String,
    host: String,
    paths: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    save_to: Option<PathBuf>,
) -> Result<usize, Failure> {
    let stream = TcpStream::connect(&address).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut saved = 0;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(path) = paths.get(index) else { return Ok(saved) };
        let request = http::Request::get(path.as_str()).header(http::header::HOST, &host).body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let ok = response.status().is_success();
        let body = response.into_body().collect().await?.to_bytes();
        if let (true, Some(dir)) = (ok, &save_to) {
            save(dir, index, &body)?;
            saved += 1;
        }
    }
}

/// One task of the reqwest variant: fetches the next URL until none is
/// left. Returns the number of bodies saved.
async fn reqwest_task(
    client: reqwest::Client,
    urls: Arc<Vec<reqwest::Url>>,
    next: Arc<AtomicUsize>,
    save_to: PathBuf,
) -> Result<usize, Failure> {
    let mut saved = 0;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(url) = urls.get(index) else { return Ok(saved) };
        let response = client.get(url.clone()).send().await?;
        let ok = response.status().is_success();
        let body = response.bytes().await?;
        if ok {
            save(&save_to, index, &body)?;
            saved += 1;
        }
    }
}

/// A body saved as flagsd saves it: a temporary file beside the target,
/// one write, a rename over the target.
fn save(dir: &Path, index: usize, body: &[u8]) -> std::io::Result<()> {
    let target = dir.join(format!("{index}.gif"));
    let temp = dir.join(format!(".{index}.gif.tmp"));
    std::fs::write(&temp, body)?;
    std::fs::rename(&temp, &target)
}

fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let micros = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// The client of a variant.
enum Client<'a> {
    Hyper { address: &'a str, host: &'a str, paths: &'a Arc<Vec<String>> },
    Reqwest { client: reqwest::Client, urls: &'a Arc<Vec<reqwest::Url>> },
}

/// One round: every URL once, by `CONNECTIONS` tasks. Returns (wall, CPU,
/// bodies saved).
fn round(
    runtime: &tokio::runtime::Runtime,
    client: &Client<'_>,
    save_to: Option<&Path>,
) -> Result<(Duration, Duration, usize), Failure> {
    let (started, cpu) = (Instant::now(), cpu_time());
    let next = Arc::new(AtomicUsize::new(0));
    let saved = runtime.block_on(async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| match client {
                Client::Hyper { address, host, paths } => tokio::spawn(connection(
                    address.to_string(),
                    host.to_string(),
                    Arc::clone(paths),
                    Arc::clone(&next),
                    save_to.map(Path::to_owned),
                )),
                Client::Reqwest { client, urls } => tokio::spawn(reqwest_task(
                    client.clone(),
                    Arc::clone(urls),
                    Arc::clone(&next),
                    save_to.map_or_else(PathBuf::new, Path::to_owned),
                )),
            })
            .collect();
        let mut saved = 0;
        for task in tasks {
            saved += task.await??;
        }
        Ok::<_, Failure>(saved)
    })?;
    Ok((started.elapsed(), cpu_time() - cpu, saved))
}

fn median(mut figures: Vec<Duration>) -> Duration {
    figures.sort();
    figures[figures.len() / 2]
}

fn main() -> Result<(), Failure> {
    let Ok(base) = std::env::var("FLAGSD_FLOOR_URL") else {
        println!("skipped: set FLAGSD_FLOOR_URL=http://127.0.0.1:PORT/flags (nginx or flagsd testserver)");
        return Ok(());
    };
    let uri: http::Uri = base.parse()?;
    let authority = uri.authority().ok_or("FLAGSD_FLOOR_URL has no host:port")?.to_string();
    let address = if uri.port().is_some() { authority.clone() } else { format!("{authority}:80") };
    let paths = Arc::new(paths(uri.path().trim_end_matches('/')));
    let urls = Arc::new(paths.iter().map(|p| format!("http://{authority}{p}").parse()).collect::<Result<Vec<_>, _>>()?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let scratch = std::env::var_os("FLAGSD_BENCH_DIR").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from);
    println!("{} URLs under {base}, {CONNECTIONS} connections, median of {ROUNDS} rounds:", paths.len());
    println!("{:<22} {:>10} {:>10} {:>14} {:>6}", "variant", "wall", "CPU", "CPU per URL", "saved");
    for (name, use_reqwest, save) in
        [("hyper, bodies dropped", false, false), ("hyper + files", false, true), ("reqwest + files", true, true)]
    {
        let (mut walls, mut cpus, mut saved) = (Vec::new(), Vec::new(), 0);
        for _ in 0..ROUNDS {
            let dir = tempfile::tempdir_in(&scratch)?;
            let client = if use_reqwest {
                // A new reqwest client each round, so that its connections
                // are new too, as hyper's are.
                Client::Reqwest { client: reqwest::Client::builder().no_proxy().build()?, urls: &urls }
            } else {
                Client::Hyper { address: &address, host: &authority, paths: &paths }
            };
            let (wall, cpu, count) = round(&runtime, &client, save.then_some(dir.path()))?;
            walls.push(wall);
            cpus.push(cpu);
            saved = count;
        }
        let (wall, cpu) = (median(walls), median(cpus));
        let per_url = cpu.as_secs_f64() * 1e6 / paths.len() as f64;
        println!(
            "{name:<22} {:>7.1} ms {:>7.1} ms {per_url:>11.1} µs {saved:>6}",
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
