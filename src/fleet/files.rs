//! Validators shared by the fleet: what each node saved for a code (its
//! path, size, SHA-256, `ETag`, `Last-Modified`), so that a flag saved by
//! one node is asked for conditionally by any other next time.
//!
//! A node writes a code's record after saving its file (unless it is the
//! record the fleet has already), and keeps a copy of every record of its
//! batches up to date by watching the bucket; its fetchers read that copy.
//! The record of a code that is no longer in its batch is removed when the
//! watch meets it, so the bucket does not grow with every code ever asked
//! for.

use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt as _;

use super::claims::FleetClaims;
use super::core::Fleet;
use super::names::{file_key, token};
use crate::model::codes::{CountryCode, parse_code};
use crate::store::claims::NameClaims as _;
use crate::store::state::{FileRecord, SharedKnownFiles};

/// How long to wait before watching again after the watch failed.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

impl Fleet {
    /// Records what this node saved for `code` of `batch` (a failure is
    /// logged: the next run then asks unconditionally).
    pub async fn save_validators(&self, batch: &str, code: CountryCode, record: &FileRecord) {
        let Ok(value) = serde_json::to_vec(record) else {
            tracing::debug!(%batch, cc = %code, "validators not shareable (a path that is not UTF-8)");
            return;
        };
        if let Err(e) = self.files.put(file_key(batch, code), value.into()).await {
            tracing::warn!(%batch, cc = %code, error = %e, "cannot share the validators of a code");
        }
    }

    /// Forgets `code`, no longer in `batch`: its record (under `key`,
    /// `value`) and the claim on its file's name.
    async fn forget(&self, batch: &str, code: CountryCode, key: &str, value: &[u8]) {
        let name = serde_json::from_slice::<FileRecord>(value)
            .ok()
            .and_then(|record| record.path)
            .and_then(|path| path.file_name().and_then(|n| n.to_str()).map(str::to_owned));
        if let Some(name) = name
            && let Err(e) = FleetClaims::new(self.clone(), batch).release(code, &name).await
        {
            tracing::debug!(%batch, cc = %code, error = %e, "cannot release the name of a code not in the batch");
        }
        if let Err(e) = self.files.purge(key).await {
            tracing::debug!(%batch, cc = %code, error = %e, "cannot remove the record of a code not in the batch");
        }
    }

    /// Keeps `known` equal to the fleet's records of `batch`, for as long as
    /// the returned future runs; records of codes not in `codes` are removed.
    pub async fn watch_validators(self, batch: String, codes: Vec<CountryCode>, known: SharedKnownFiles) {
        let prefix = format!("{}.", token(&batch));
        loop {
            match self.files.watch_with_history(format!("{prefix}*")).await {
                Ok(mut entries) => {
                    while let Some(entry) = entries.next().await {
                        let entry = match entry {
                            Ok(entry) => entry,
                            Err(e) => {
                                tracing::warn!(%batch, error = %e, "watching the fleet's validators failed");
                                break;
                            }
                        };
                        let Some(code) = entry.key.strip_prefix(&prefix).and_then(parse_code) else { continue };
                        if !codes.contains(&code) && entry.operation == Operation::Put {
                            self.forget(&batch, code, &entry.key, &entry.value).await;
                            continue;
                        }
                        let record = match entry.operation {
                            Operation::Put => serde_json::from_slice::<FileRecord>(&entry.value).ok(),
                            Operation::Delete | Operation::Purge => None,
                        };
                        // Whole records go in or out: a poisoned lock is still usable.
                        let mut known = known.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                        match record {
                            Some(record) => known.insert(code, record),
                            None => known.remove(&code),
                        };
                    }
                }
                Err(e) => tracing::warn!(%batch, error = %e, "cannot watch the fleet's validators"),
            }
            tokio::time::sleep(REWATCH_AFTER).await;
        }
    }
}
