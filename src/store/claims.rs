//! Who may use which file name, when files are named by country.
//!
//! Two codes may name the same country (or names that differ in case only,
//! one file on a case-insensitive file system), so each name is claimed
//! before a file takes it, and a claim is never taken over. Where claims
//! are kept is a seam, [`NameClaims`]: in this process ([`LocalClaims`]), or
//! somewhere all the nodes of a fleet share, whose answers come over the
//! network; hence futures, and errors.
//!
//! The rules are the store's, not the backend's: [`claim_file_name`] tries
//! the names of [`candidate_name`] in order and takes the first one the
//! backend says is the code's. A backend only keeps "this name is that
//! code's", atomically: a claim succeeds if the name is free or already the
//! code's, a release frees a name only for the code that holds it.

use std::collections::HashMap;
use std::error::Error;
use std::future::{Future, ready};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::naming::{candidate_name, country_stem};
use super::state::KnownFiles;
use crate::model::codes::CountryCode;

/// A boxed future of a claims backend. It need not be `Send`: it runs on
/// the worker thread that asked.
pub type ClaimFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A backend's answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is the code's: it was free, or the code held it already.
    Granted,
    /// Another code holds the name.
    Taken,
}

/// A claims backend could not say whose a name is (it did not answer, or
/// refused the request); nothing was claimed or released.
#[derive(Debug, thiserror::Error)]
#[error("{backend} failed")]
pub struct ClaimError {
    /// The backend, in a few words (`the fleet's name bucket`).
    pub backend: &'static str,
    /// Why it failed.
    #[source]
    pub source: Box<dyn Error + Send + Sync>,
}

impl ClaimError {
    /// `backend` failed because of `source`.
    pub fn new(backend: &'static str, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self { backend, source: source.into() }
    }
}

/// A file name could not be claimed for a code.
#[derive(Debug, thiserror::Error)]
#[error("cannot claim the file name '{name}'")]
pub struct NameNotClaimed {
    /// The name being claimed when the backend failed.
    pub name: String,
    /// The backend's failure.
    #[source]
    pub source: ClaimError,
}

impl NameNotClaimed {
    /// The failure in one line, every cause included (`cannot claim the
    /// file name 'France.gif': the fleet's name bucket failed: timed out`),
    /// for an outcome's detail.
    pub fn detail(&self) -> String {
        let mut detail = self.to_string();
        let mut cause = Error::source(self);
        while let Some(error) = cause {
            detail.push_str(": ");
            detail.push_str(&error.to_string());
            cause = error.source();
        }
        detail
    }
}

/// Where claims on file names are kept: which code holds which name.
///
/// Names are compared case-insensitively: an implementation keys its claims
/// by the folded name ([`fold`]), so that `France.gif` and `FRANCE.gif` are
/// one claim. Each operation is atomic on its own (a remote backend: a
/// create-if-absent of the folded name holding the code, then a read of the
/// holder when it exists); the store never needs two at once.
pub trait NameClaims: Send + Sync {
    /// Claims `name` for `code`: [`Claim::Granted`] if nobody held it (it
    /// is `code`'s from now on) or `code` held it already, [`Claim::Taken`]
    /// if another code holds it.
    fn claim<'a>(&'a self, code: CountryCode, name: &'a str) -> ClaimFuture<'a, Result<Claim, ClaimError>>;

    /// Gives up `code`'s claim on `name` (its file is gone). A name that
    /// another code holds, or nobody, is left as it is.
    fn release<'a>(&'a self, code: CountryCode, name: &'a str) -> ClaimFuture<'a, Result<(), ClaimError>>;
}

/// The key a claim on `name` is kept under: two names with the same key
/// would be one file on a case-insensitive file system.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// Claims a file name for `code`, whose country is `country`: the first of
/// its [`candidate_name`]s that `claims` grants. The candidates never run
/// out and a backend holds finitely many names, so one is granted (or the
/// backend fails).
pub async fn claim_file_name(
    claims: &dyn NameClaims,
    code: CountryCode,
    country: &str,
) -> Result<String, NameNotClaimed> {
    let stem = country_stem(code, country);
    let mut n = 1;
    loop {
        let name = candidate_name(&stem, code, n);
        match claims.claim(code, &name).await {
            Ok(Claim::Granted) => return Ok(name),
            Ok(Claim::Taken) => n += 1,
            Err(source) => return Err(NameNotClaimed { name, source }),
        }
    }
}

/// Claims kept in this process: the backend of a job that saves alone into
/// its output directory.
#[derive(Debug)]
pub struct LocalClaims {
    /// The holder of each name, by [`fold`]ed name.
    holders: Mutex<HashMap<String, CountryCode>>,
}

impl LocalClaims {
    /// Claims in which each file that earlier runs saved in `dir` (as
    /// `known` records them) is its code's, so that a code whose flag is
    /// unchanged keeps its file even when another code now claims the
    /// same name. Files recorded elsewhere are not this directory's.
    pub fn seeded(dir: &Path, known: &KnownFiles) -> Self {
        let mut holders = HashMap::new();
        for (code, record) in known {
            let name = record.path.as_deref().filter(|p| p.parent() == Some(dir)).and_then(Path::file_name);
            if let Some(name) = name.and_then(|n| n.to_str()) {
                holders.entry(fold(name)).or_insert(*code);
            }
        }
        Self { holders: Mutex::new(holders) }
    }

    /// The claims, locked. Every change is one insert or removal, so a
    /// lock poisoned by a panic elsewhere still holds consistent claims.
    fn holders(&self) -> MutexGuard<'_, HashMap<String, CountryCode>> {
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn claim_now(&self, code: CountryCode, name: &str) -> Claim {
        let holder = *self.holders().entry(fold(name)).or_insert(code);
        if holder == code { Claim::Granted } else { Claim::Taken }
    }

    fn release_now(&self, code: CountryCode, name: &str) {
        let key = fold(name);
        let mut holders = self.holders();
        if holders.get(&key) == Some(&code) {
            holders.remove(&key);
        }
    }
}

impl NameClaims for LocalClaims {
    fn claim<'a>(&'a self, code: CountryCode, name: &'a str) -> ClaimFuture<'a, Result<Claim, ClaimError>> {
        Box::pin(ready(Ok(self.claim_now(code, name))))
    }

    fn release<'a>(&'a self, code: CountryCode, name: &'a str) -> ClaimFuture<'a, Result<(), ClaimError>> {
        self.release_now(code, name);
        Box::pin(ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::store::state::FileRecord;

    fn code(cc: &str) -> CountryCode {
        crate::model::codes::parse_code(cc).expect("a code")
    }

    fn record(path: &str) -> FileRecord {
        FileRecord {
            status: "downloaded".to_owned(),
            path: Some(PathBuf::from(path)),
            size: Some(1),
            sha256: None,
            etag: None,
            last_modified: None,
            url: None,
        }
    }

    /// A backend in which the names of `taken` are another code's, and
    /// that records every name it is asked for.
    struct Double {
        taken: &'static [&'static str],
        fail: bool,
        asked: Mutex<Vec<String>>,
    }

    impl Double {
        fn taken(taken: &'static [&'static str]) -> Self {
            Self { taken, fail: false, asked: Mutex::new(Vec::new()) }
        }

        fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl NameClaims for Double {
        fn claim<'a>(&'a self, _: CountryCode, name: &'a str) -> ClaimFuture<'a, Result<Claim, ClaimError>> {
            self.asked.lock().unwrap().push(name.to_owned());
            let answer = if self.fail {
                Err(ClaimError::new("the test bucket", "no answer"))
            } else if self.taken.contains(&name) {
                Ok(Claim::Taken)
            } else {
                Ok(Claim::Granted)
            };
            Box::pin(ready(answer))
        }

        fn release<'a>(&'a self, _: CountryCode, _: &'a str) -> ClaimFuture<'a, Result<(), ClaimError>> {
            Box::pin(ready(Ok(())))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn candidates_are_asked_for_in_order_until_one_is_granted() {
        let (ar, cl) = (code("AR"), code("CL"));
        let claims = Double::taken(&["Same.gif", "Same (AR).gif", "Same (AR-3).gif"]);
        assert_eq!(claim_file_name(&claims, ar, "Same").await.unwrap(), "Same (AR-4).gif");
        assert_eq!(claims.asked(), ["Same.gif", "Same (AR).gif", "Same (AR-3).gif", "Same (AR-4).gif"]);
        let claims = Double::taken(&[]);
        assert_eq!(claim_file_name(&claims, cl, "Same (AR)").await.unwrap(), "Same (AR).gif");
        assert_eq!(claim_file_name(&claims, cl, "/").await.unwrap(), "_.gif");
        assert_eq!(claim_file_name(&claims, cl, "..").await.unwrap(), "CL.gif");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_backend_names_the_name_it_was_asked_for() {
        let claims = Double { fail: true, ..Double::taken(&[]) };
        let error = claim_file_name(&claims, code("FR"), "France").await.unwrap_err();
        assert_eq!(error.name, "France.gif");
        assert_eq!(error.to_string(), "cannot claim the file name 'France.gif'");
        assert_eq!(error.detail(), "cannot claim the file name 'France.gif': the test bucket failed: no answer");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn collisions_get_the_code_appended() {
        let (br, ar, cl) = (code("BR"), code("AR"), code("CL"));
        let claims = LocalClaims::seeded(Path::new("out"), &KnownFiles::new());
        assert_eq!(claim_file_name(&claims, br, "Same").await.unwrap(), "Same.gif");
        assert_eq!(claim_file_name(&claims, ar, "Same").await.unwrap(), "Same (AR).gif");
        assert_eq!(claim_file_name(&claims, br, "Same").await.unwrap(), "Same.gif");
        assert_eq!(claim_file_name(&claims, cl, "Same (AR)").await.unwrap(), "Same (AR) (CL).gif");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn names_differing_in_case_only_do_not_share_a_file() {
        let (fr, fx) = (code("FR"), code("FX"));
        let claims = LocalClaims::seeded(Path::new("out"), &KnownFiles::new());
        assert_eq!(claim_file_name(&claims, fr, "France").await.unwrap(), "France.gif");
        assert_eq!(claim_file_name(&claims, fx, "FRANCE").await.unwrap(), "FRANCE (FX).gif");
        claims.release(fx, "FRANCE (FX).gif").await.unwrap();
        claims.release(fx, "France.gif").await.unwrap();
        assert_eq!(claim_file_name(&claims, fx, "FRANCE").await.unwrap(), "FRANCE (FX).gif", "FX cannot release FR's");
        claims.release(fr, "FRANCE.GIF").await.unwrap();
        assert_eq!(claim_file_name(&claims, fx, "france").await.unwrap(), "france.gif");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn seeded_names_stay_with_their_codes_whatever_their_case() {
        let (aa, bb, cc) = (code("AA"), code("BB"), code("CC"));
        let known = KnownFiles::from([(aa, record("out/Foo.gif")), (cc, record("elsewhere/Bar.gif"))]);
        let claims = LocalClaims::seeded(Path::new("out"), &known);
        assert_eq!(claims.claim(bb, "FOO.gif").await.unwrap(), Claim::Taken);
        assert_eq!(claim_file_name(&claims, bb, "foo").await.unwrap(), "foo (BB).gif");
        assert_eq!(claim_file_name(&claims, aa, "Foo").await.unwrap(), "Foo.gif");
        assert_eq!(claim_file_name(&claims, bb, "Bar").await.unwrap(), "Bar.gif", "another directory's file");
    }
}
