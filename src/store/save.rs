//! Saving flags: which file is a code's, whether an earlier one still
//! stands, and how a new one lands.
//!
//! The HTTP side only answers; everything that touches the output
//! directory is here, in a [`Saver`] made whole by one constructor (the
//! directory, how files are named, what earlier runs saved), so that no
//! order of set-up calls can leave a part of it unready.
//!
//! A body is streamed into a temporary file ([`Incoming`]) and renamed over
//! its target only once complete, so a target file is never half written: a
//! failed or abandoned download drops its temporary file, which deletes it
//! (see [`OutputDir`]). Named by code, the target is `{CC}.gif`. Named by
//! country, it is claimed through [`NameClaims`] once the body is complete,
//! and the name an earlier run gave the code is then retired: its file is
//! removed if unaltered, and its claim released, so that a server that
//! renames its countries cannot grow the directory without bound.
//!
//! With run state, a code whose file from an earlier run is still there,
//! unaltered (same size and SHA-256), has [`Earlier`] validators to ask
//! with; every saved file's SHA-256 is computed as it streams.
//!
//! With timestamps (`fetch --timestamping`, as `wget -N`), a saved file
//! gets the server's `Last-Modified` as its modification time, and a file
//! with no earlier record is asked for with its own time
//! (`If-Modified-Since`) while it still looks as it was saved: a regular
//! file, not empty, within the size cap, whose time is whole seconds (an
//! HTTP date, as flagsd, `wget -N` and `curl -R` set it). A file written
//! since, whatever its new size, has the time of that write, and is asked
//! for again in full.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::body::BodyWriter;
use super::claims::{LocalClaims, NameClaims, claim_file_name};
use super::output::OutputDir;
use super::state::{KnownFiles, SharedKnownFiles};
use crate::model::codes::CountryCode;
use crate::model::digest::{hex, sha256_hex};
use crate::model::outcome::{DownloadError, SavedFile};
use crate::sys::files::read_exact_regular;

/// How a [`Saver`] names its files.
pub enum Names {
    /// `{CC}.gif`, as flags2.
    ByCode,
    /// `{country}.gif`, each name claimed through the given claims; `None`:
    /// claims kept in this process ([`LocalClaims`]), seeded with the
    /// names of the files earlier runs saved.
    ByCountry(Option<Arc<dyn NameClaims>>),
}

/// A file an earlier run saved for a code, still there and unaltered, with
/// the validators the server gave for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// Where it is.
    pub path: PathBuf,
    /// The server's `ETag` for it.
    pub etag: Option<String>,
    /// The server's `Last-Modified` for it.
    pub last_modified: Option<String>,
}

/// A body on its way into a temporary file of the output directory.
pub struct Incoming {
    /// `{CC}.gif`: the path errors name until the file has its final name.
    target: PathBuf,
    file: BodyWriter<NamedTempFile>,
    /// `Some` when run state is kept.
    hasher: Option<Sha256>,
    bytes: u64,
    /// The time to give the file, with timestamps.
    modified: Option<SystemTime>,
}

impl Incoming {
    /// Gives the file `modified` (the server's `Last-Modified`) as its
    /// time once saved, if the saver keeps timestamps.
    pub fn dated(&mut self, modified: Option<SystemTime>) {
        self.modified = modified;
    }

    /// Adds `chunk` to the file (and to its hash).
    pub fn push(&mut self, chunk: Bytes) -> Result<(), DownloadError> {
        self.bytes += chunk.len() as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&chunk);
        }
        self.file.push(chunk).map_err(|e| io_error(&self.target, e))
    }
}

/// Saves flags into one output directory.
pub struct Saver {
    output: Arc<OutputDir>,
    /// `Some` when files are named by country.
    claims: Option<Arc<dyn NameClaims>>,
    /// `Some` when run state is kept: what earlier runs saved, by code.
    known: Option<SharedKnownFiles>,
    /// Largest body saved, in bytes: a larger earlier file is not read.
    max_size: u64,
    /// Files get the server's time, and files without a record are asked
    /// for with theirs (`--timestamping`).
    timestamps: bool,
}

impl Saver {
    /// A saver into `output`, naming files by `names`. With `known` (run
    /// state is kept, and `known` may be kept up to date by others
    /// meanwhile), earlier files are offered for conditional requests and
    /// every saved file is hashed. Earlier files larger than `max_size`
    /// are not considered.
    pub fn new(output: Arc<OutputDir>, names: Names, known: Option<SharedKnownFiles>, max_size: u64) -> Self {
        let claims = match names {
            Names::ByCode => None,
            Names::ByCountry(Some(claims)) => Some(claims),
            Names::ByCountry(None) => {
                let seeded = match &known {
                    Some(known) => LocalClaims::seeded(output.path(), &read(known)),
                    None => LocalClaims::seeded(output.path(), &KnownFiles::new()),
                };
                Some(Arc::new(seeded) as Arc<dyn NameClaims>)
            }
        };
        Self { output, claims, known, max_size, timestamps: false }
    }

    /// The same saver, keeping timestamps when `on` (see the module's
    /// description): only for files named by code.
    pub fn timestamping(mut self, on: bool) -> Self {
        self.timestamps = on && self.claims.is_none();
        self
    }

    /// Whether saved files get the server's time ([`Incoming::dated`]).
    pub fn keeps_timestamps(&self) -> bool {
        self.timestamps
    }

    /// The file an earlier run saved for `code`, if it is still in this
    /// output directory, unaltered, and its validators belong to this run's
    /// URL (`recorded_as` says whether a recorded URL is the one this run
    /// records `code`'s validators under).
    ///
    /// The file must be where this run's naming puts it: a `{CC}.gif` when
    /// naming by code, a country name otherwise (after a change of server
    /// or of naming, the first run asks unconditionally). Only a regular
    /// file of the recorded size is read, on a blocking thread, so that a
    /// FIFO, a device or a huge file put in its place cannot stall or bloat
    /// the event loop.
    ///
    /// With timestamps, a code that has no such file has its `{CC}.gif`
    /// offered with its own time, if it still looks as it was saved.
    pub async fn earlier(&self, code: CountryCode, recorded_as: impl FnOnce(&str) -> bool) -> Option<Earlier> {
        let recorded = match &self.known {
            Some(_) => self.recorded(code, recorded_as).await,
            None => None,
        };
        if recorded.is_none() && self.timestamps { self.dated(code).await } else { recorded }
    }

    /// The file of `code` as run state recorded it (see [`Saver::earlier`]).
    async fn recorded(&self, code: CountryCode, recorded_as: impl FnOnce(&str) -> bool) -> Option<Earlier> {
        let (path, size, sha256, etag, last_modified) = {
            let known = read(self.known.as_ref()?);
            let record = known.get(&code)?;
            let path = record.path.as_deref()?;
            let size = record.size.filter(|size| *size <= self.max_size)?;
            let by_code = path == self.output.target_path(code);
            if by_code != self.claims.is_none()
                || path.parent() != Some(self.output.path())
                || !record.url.as_deref().is_some_and(recorded_as)
                || (record.etag.is_none() && record.last_modified.is_none())
            {
                return None;
            }
            (path.to_owned(), size, record.sha256.clone()?, record.etag.clone(), record.last_modified.clone())
        };
        let hashed = tokio::task::spawn_blocking(move || {
            let hash = read_exact_regular(&path, size).ok().flatten().map(|body| sha256_hex(&body));
            (path, hash)
        });
        let (path, hash) = hashed.await.ok()?;
        (hash? == sha256).then_some(Earlier { path, etag, last_modified })
    }

    /// `code`'s `{CC}.gif` with its time as `Last-Modified`, if it is a
    /// regular file, not empty, within the size cap, whose time is whole
    /// seconds. Looked at on a blocking thread, as the earlier files of
    /// run state are read.
    async fn dated(&self, code: CountryCode) -> Option<Earlier> {
        let path = self.output.target_path(code);
        let max_size = self.max_size;
        let looked = tokio::task::spawn_blocking(move || {
            let meta = std::fs::symlink_metadata(&path).ok()?;
            let since_epoch = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
            let as_saved =
                meta.file_type().is_file() && (1..=max_size).contains(&meta.len()) && since_epoch.subsec_nanos() == 0;
            as_saved.then(|| (path, UNIX_EPOCH + since_epoch))
        });
        let (path, modified) = looked.await.ok()??;
        Some(Earlier { path, etag: None, last_modified: Some(httpdate::fmt_http_date(modified)) })
    }

    /// A new temporary file for `code`'s body.
    pub fn incoming(&self, code: CountryCode) -> Result<Incoming, DownloadError> {
        let target = self.output.target_path(code);
        let file = self.output.temp_file(code).map_err(|e| io_error(&target, e))?;
        let hasher = self.known.is_some().then(Sha256::new);
        Ok(Incoming { target, file: BodyWriter::new(file), hasher, bytes: 0, modified: None })
    }

    /// Gives `code`'s complete body its final name, and retires the name an
    /// earlier run gave it if that changed. Named by country, the name is
    /// claimed for the country that `country` asks for (only then: it costs
    /// a request); the file keeps its temporary name until then, so a
    /// failure to name it leaves nothing behind.
    ///
    /// The [`SavedFile`] has the path, size and hash; the HTTP facts
    /// (status, validators, origin) are the caller's to add.
    pub async fn save<C>(
        &self,
        code: CountryCode,
        incoming: Incoming,
        country: impl FnOnce() -> C,
    ) -> Result<SavedFile, DownloadError>
    where
        C: Future<Output = Result<String, DownloadError>>,
    {
        // The (large) future of `country` is made here, where it is awaited:
        // taken as an argument, it would be kept twice in this one.
        let Incoming { mut target, file, hasher, bytes, modified } = incoming;
        let file = file.finish().map_err(|e| io_error(&target, e))?;
        if let Some(modified) = modified.filter(|_| self.timestamps) {
            // Without it the file is only asked for in full next time.
            if let Err(e) = file.as_file().set_modified(modified) {
                tracing::warn!(cc = %code, error = %e, "cannot give the file the server's time");
            }
        }
        if let Some(claims) = &self.claims {
            let country = country().await?;
            let claimed = claim_file_name(&**claims, code, &country).await;
            target = self.output.path().join(claimed.map_err(|e| DownloadError::Io { detail: e.detail() })?);
        }
        file.persist(&target).map_err(|e| io_error(&target, e.error))?;
        if let Some(claims) = &self.claims {
            self.retire_old_name(code, &target, &**claims).await;
        }
        let sha256 = hasher.map(|h| hex(&h.finalize()));
        Ok(SavedFile { sha256, ..SavedFile::new(target, bytes) })
    }

    /// After `code` was saved under a new country name (`target`), removes
    /// the file an earlier run saved for it under another name. Only a file
    /// that is still exactly what was saved (a regular file of the recorded
    /// size and SHA-256) is removed, and its name released: one changed by
    /// someone else is left alone, and keeps its name claimed.
    async fn retire_old_name(&self, code: CountryCode, target: &Path, claims: &dyn NameClaims) {
        let (old, size, sha256) = {
            let Some(known) = &self.known else { return };
            let known = read(known);
            let Some(record) = known.get(&code) else { return };
            let (Some(old), Some(size), Some(sha256)) = (&record.path, record.size, &record.sha256) else { return };
            if old == target || old.parent() != Some(self.output.path()) {
                return;
            }
            (old.clone(), size, sha256.clone())
        };
        let removed = tokio::task::spawn_blocking(move || {
            let unaltered = read_exact_regular(&old, size).ok().flatten().is_some_and(|b| sha256_hex(&b) == sha256);
            (unaltered && std::fs::remove_file(&old).is_ok()).then_some(old)
        });
        if let Ok(Some(old)) = removed.await
            && let Some(name) = old.file_name().and_then(|n| n.to_str())
            && let Err(e) = claims.release(code, name).await
        {
            tracing::warn!(cc = %code, name, error = %e, cause = %e.source, "cannot release the claim on a retired file name");
        }
    }
}

/// The files earlier runs saved, for reading. Writers only insert or remove
/// whole records, so a poisoned lock is still read.
fn read(known: &SharedKnownFiles) -> RwLockReadGuard<'_, KnownFiles> {
    known.read().unwrap_or_else(PoisonError::into_inner)
}

fn io_error(path: &Path, e: io::Error) -> DownloadError {
    DownloadError::Io { detail: format!("{}: {e}", path.display()) }
}

#[cfg(test)]
mod tests {
    use std::future::ready;
    use std::sync::RwLock;

    use super::*;
    use crate::model::codes::parse_code;
    use crate::store::claims::{Claim, ClaimError, ClaimFuture};
    use crate::store::state::FileRecord;

    const URL: &str = "http://h/flags/aa/aa.gif";

    fn code(cc: &str) -> CountryCode {
        parse_code(cc).expect("a code")
    }

    /// `body`, as an earlier run saved it at `path` from `URL`.
    fn record(path: &Path, body: &[u8]) -> FileRecord {
        FileRecord {
            status: "downloaded".to_owned(),
            path: Some(path.to_owned()),
            size: Some(body.len() as u64),
            sha256: Some(sha256_hex(body)),
            etag: Some("\"e1\"".to_owned()),
            last_modified: None,
            url: Some(URL.to_owned()),
        }
    }

    fn shared(known: KnownFiles) -> Option<SharedKnownFiles> {
        Some(Arc::new(RwLock::new(known)))
    }

    fn output() -> (tempfile::TempDir, Arc<OutputDir>) {
        let dir = tempfile::tempdir().unwrap();
        let output = Arc::new(OutputDir::prepare(dir.path()).unwrap());
        (dir, output)
    }

    /// Saves `body` for `code`, whose country is `country`.
    async fn save(
        saver: &Saver,
        code: CountryCode,
        body: &'static [u8],
        country: &str,
    ) -> Result<SavedFile, DownloadError> {
        let mut incoming = saver.incoming(code)?;
        incoming.push(Bytes::from_static(body))?;
        saver.save(code, incoming, || ready(Ok(country.to_owned()))).await
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    /// A claims backend that never answers.
    struct Unreachable;

    impl NameClaims for Unreachable {
        fn claim<'a>(&'a self, _: CountryCode, _: &'a str) -> ClaimFuture<'a, Result<Claim, ClaimError>> {
            Box::pin(ready(Err(ClaimError::new("the test bucket", "no answer"))))
        }

        fn release<'a>(&'a self, _: CountryCode, _: &'a str) -> ClaimFuture<'a, Result<(), ClaimError>> {
            Box::pin(ready(Err(ClaimError::new("the test bucket", "no answer"))))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bodies_land_under_their_code_hashed_only_with_run_state() {
        let (dir, output) = output();
        let saver = Saver::new(Arc::clone(&output), Names::ByCode, None, u64::MAX);
        let saved = save(&saver, code("AA"), b"GIF89a", "ignored").await.unwrap();
        assert_eq!((saved.path, saved.bytes, saved.sha256), (dir.path().join("AA.gif"), 6, None));
        let saver = Saver::new(output, Names::ByCode, shared(KnownFiles::new()), u64::MAX);
        let saved = save(&saver, code("BB"), b"GIF89a", "ignored").await.unwrap();
        assert_eq!(saved.sha256, Some(sha256_hex(b"GIF89a")));
        assert_eq!(names_in(dir.path()), ["AA.gif", "BB.gif"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_that_fails_is_an_io_error_and_leaves_nothing() {
        let (dir, output) = output();
        let saver = Saver::new(output, Names::ByCountry(Some(Arc::new(Unreachable))), None, u64::MAX);
        let error = save(&saver, code("FR"), b"GIF89a", "France").await.unwrap_err();
        assert_eq!(error.kind(), "io_error");
        assert_eq!(
            error,
            DownloadError::Io {
                detail: "cannot claim the file name 'France.gif': the test bucket failed: no answer".to_owned()
            }
        );
        assert!(names_in(dir.path()).is_empty(), "the temporary file is gone");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_names_of_known_files_stay_with_their_codes() {
        let (dir, output) = output();
        let known = KnownFiles::from([(code("AA"), record(&dir.path().join("Foo.gif"), b"old"))]);
        // One constructor takes the naming and the known files together: no
        // order of set-up can build the claims before they are known.
        let saver = Saver::new(output, Names::ByCountry(None), shared(known), u64::MAX);
        let taken = save(&saver, code("BB"), b"bb", "FOO").await.unwrap();
        assert_eq!(taken.path, dir.path().join("FOO (BB).gif"));
        let kept = save(&saver, code("AA"), b"aa", "Foo").await.unwrap();
        assert_eq!(kept.path, dir.path().join("Foo.gif"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_renamed_country_retires_its_unaltered_old_file_and_name() {
        let (dir, output) = output();
        let (old, altered) = (dir.path().join("Old.gif"), dir.path().join("Kept.gif"));
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(&altered, b"new").unwrap();
        let known = KnownFiles::from([(code("AA"), record(&old, b"old")), (code("CC"), record(&altered, b"old"))]);
        let saver = Saver::new(output, Names::ByCountry(None), shared(known), u64::MAX);
        save(&saver, code("AA"), b"aa", "New").await.unwrap();
        save(&saver, code("CC"), b"cc", "Other").await.unwrap();
        assert_eq!(names_in(dir.path()), ["Kept.gif", "New.gif", "Other.gif"]);
        let freed = save(&saver, code("BB"), b"bb", "Old").await.unwrap();
        assert_eq!(freed.path, old, "the retired name is free again");
        let held = save(&saver, code("BB"), b"bb", "Kept").await.unwrap();
        assert_eq!(held.path, dir.path().join("Kept (BB).gif"), "an altered file keeps its name");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_earlier_file_is_offered_only_unaltered_where_this_run_names_it() {
        let (dir, output) = output();
        let path = dir.path().join("AA.gif");
        std::fs::write(&path, b"GIF89a").unwrap();
        let known = shared(KnownFiles::from([(code("AA"), record(&path, b"GIF89a"))]));
        let by_code = Saver::new(Arc::clone(&output), Names::ByCode, known.clone(), u64::MAX);
        let earlier = Earlier { path: path.clone(), etag: Some("\"e1\"".to_owned()), last_modified: None };
        assert_eq!(by_code.earlier(code("AA"), |url| url == URL).await, Some(earlier));
        assert_eq!(by_code.earlier(code("AA"), |url| url == "http://other/aa/aa.gif").await, None);
        assert_eq!(by_code.earlier(code("BB"), |_| true).await, None);
        let by_country = Saver::new(Arc::clone(&output), Names::ByCountry(None), known.clone(), u64::MAX);
        assert_eq!(by_country.earlier(code("AA"), |_| true).await, None, "named as another naming names");
        let small = Saver::new(Arc::clone(&output), Names::ByCode, known.clone(), 5);
        assert_eq!(small.earlier(code("AA"), |_| true).await, None, "larger than the size cap");
        std::fs::write(&path, b"GIF89b").unwrap();
        assert_eq!(by_code.earlier(code("AA"), |_| true).await, None, "altered");
    }
}
