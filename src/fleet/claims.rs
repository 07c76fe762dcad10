//! File names claimed fleet-wide, when a batch names its files by country:
//! the store's [`NameClaims`] kept in the bucket `{fleet}_names`, so that
//! two nodes never give one name to two codes (and never write one path for
//! two codes).
//!
//! A claim is a create-if-absent of the key `{batch}.{hash of the folded
//! name}` whose value names the code; a name that is the code's already is
//! granted again; a release deletes the key only if it still names the code
//! (compare-and-delete on its revision), so a name another code claimed in
//! between is never freed. Claims last as long as the files: the code's
//! old name is released when its file is saved under a new one.

use async_nats::jetstream::kv::CreateErrorKind;
use serde::{Deserialize, Serialize};

use super::core::Fleet;
use super::names::name_key;
use super::runs::json;
use crate::model::codes::CountryCode;
use crate::store::claims::{Claim, ClaimError, ClaimFuture, NameClaims, fold};

/// What a claim records: whose the name is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NameClaim {
    /// The code the name is for.
    code: String,
    /// The name as given (the key holds only a hash of its folded form).
    name: String,
}

/// The backend, in a few words, for errors.
const BACKEND: &str = "the fleet's file-name bucket";

/// The file names of one batch, claimed in the fleet.
pub struct FleetClaims {
    fleet: Fleet,
    batch: String,
}

impl FleetClaims {
    /// The claims on the names of `batch`'s files.
    pub fn new(fleet: Fleet, batch: &str) -> Self {
        Self { fleet, batch: batch.to_owned() }
    }

    /// Whose the name under `key` is, if anyone's.
    async fn holder(&self, key: &str) -> Result<Option<(String, u64)>, ClaimError> {
        let entry = self.fleet.file_names.entry(key).await.map_err(|e| ClaimError::new(BACKEND, e))?;
        Ok(entry.filter(|e| !e.value.is_empty()).map(|e| {
            let code = serde_json::from_slice::<NameClaim>(&e.value).map(|c| c.code).unwrap_or_default();
            (code, e.revision)
        }))
    }
}

impl NameClaims for FleetClaims {
    fn claim<'a>(&'a self, code: CountryCode, name: &'a str) -> ClaimFuture<'a, Result<Claim, ClaimError>> {
        Box::pin(async move {
            let key = name_key(&self.batch, &fold(name));
            let value = json(&NameClaim { code: code.to_string(), name: name.to_owned() });
            // Twice at most: a claim released between our create and our read.
            for _ in 0..2 {
                match self.fleet.file_names.create(&key, value.clone()).await {
                    Ok(_) => return Ok(Claim::Granted),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => match self.holder(&key).await? {
                        Some((holder, _)) if holder == code.as_str() => return Ok(Claim::Granted),
                        Some(_) => return Ok(Claim::Taken),
                        None => continue,
                    },
                    Err(e) => return Err(ClaimError::new(BACKEND, e)),
                }
            }
            Ok(Claim::Taken)
        })
    }

    fn release<'a>(&'a self, code: CountryCode, name: &'a str) -> ClaimFuture<'a, Result<(), ClaimError>> {
        Box::pin(async move {
            let key = name_key(&self.batch, &fold(name));
            if let Some((holder, revision)) = self.holder(&key).await?
                && holder == code.as_str()
            {
                let deleted = self.fleet.file_names.delete_expect_revision(&key, Some(revision)).await;
                // Another change since we read it: that name is someone else's now.
                if let Err(e) = deleted {
                    tracing::debug!(batch = %self.batch, cc = %code, error = %e, "a name claim changed before its release");
                }
            }
            Ok(())
        })
    }
}
