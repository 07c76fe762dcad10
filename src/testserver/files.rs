//! The files the test server knows: `/flags/{cc}/{cc}.gif` and
//! `/flags/{cc}/metadata.json`, from the embedded data set or a directory
//! laid out the same way, each with its validators.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::conditional::{etag_of, whole_seconds};
use super::dataset;

/// `Last-Modified` of the embedded data set, in seconds since the UNIX
/// epoch: 2024-01-01T00:00:00Z (`Mon, 01 Jan 2024 00:00:00 GMT`).
const EMBEDDED_MODIFIED_UNIX: u64 = 1_704_067_200;

/// A file the server knows, with its validators.
pub struct Found {
    /// The content.
    pub body: Bytes,
    /// Its media type.
    pub content_type: &'static str,
    /// Strong entity tag, quotes included.
    pub etag: String,
    /// Modification time, to whole seconds.
    pub modified: SystemTime,
}

/// Where the files come from, and the tags of the embedded ones.
#[derive(Debug, Default)]
pub struct Files {
    /// Serve this directory instead of the embedded data set.
    root: Option<PathBuf>,
    /// Entity tags of the embedded files, by data set path, computed once.
    etags: Mutex<HashMap<String, String>>,
}

impl Files {
    /// The files under `root`, or the embedded data set without one.
    pub fn new(root: Option<PathBuf>) -> Self {
        Self { root, etags: Mutex::default() }
    }

    /// The entity tag of an embedded file, computed on first use.
    fn embedded_etag(&self, name: &str, body: &[u8]) -> String {
        let mut etags = self.etags.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(etag) = etags.get(name) {
            return etag.clone();
        }
        let etag = etag_of(body);
        etags.insert(name.to_owned(), etag.clone());
        etag
    }

    /// The file for a request path, if the path is one the server knows.
    pub fn lookup(&self, path: &str) -> Option<Found> {
        let rest = path.strip_prefix("/flags/")?;
        let (cc, name) = rest.split_once('/')?;
        let valid_cc = cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_lowercase());
        let content_type = if name == "metadata.json" {
            "application/json"
        } else if name.strip_suffix(".gif") == Some(cc) {
            "image/gif"
        } else {
            return None;
        };
        if !valid_cc {
            return None;
        }
        match &self.root {
            Some(root) => {
                // Content and time from one open file: it may be rewritten
                // between requests, so its tag is computed every time.
                let mut file = std::fs::File::open(root.join(cc).join(name)).ok()?;
                let modified = file.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut file, &mut bytes).ok()?;
                let etag = etag_of(&bytes);
                Some(Found { body: Bytes::from(bytes), content_type, etag, modified: whole_seconds(modified) })
            }
            None => {
                let key = format!("flags/{cc}/{name}");
                let bytes = dataset::get(&key)?;
                let etag = self.embedded_etag(&key, bytes);
                let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(EMBEDDED_MODIFIED_UNIX);
                Some(Found { body: Bytes::from_static(bytes), content_type, etag, modified })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flag_paths_are_served() {
        let files = Files::default();
        assert_eq!(files.lookup("/flags/br/br.gif").map(|f| f.content_type), Some("image/gif"));
        assert_eq!(files.lookup("/flags/br/metadata.json").map(|f| f.content_type), Some("application/json"));
        for path in ["/flags/zz/zz.gif", "/flags/br/ar.gif", "/flags/BR/BR.gif", "/flags/../br.gif", "/br/br.gif"] {
            assert!(files.lookup(path).is_none(), "{path}");
        }
    }

    #[test]
    fn embedded_files_have_cached_tags_and_the_fixed_date() {
        let files = Files::default();
        let found = files.lookup("/flags/br/br.gif").unwrap();
        let expected = etag_of(dataset::get("flags/br/br.gif").unwrap());
        assert_eq!(found.etag, expected);
        assert_eq!(httpdate::fmt_http_date(found.modified), "Mon, 01 Jan 2024 00:00:00 GMT");
        let cached = files.etags.lock().unwrap().get("flags/br/br.gif").cloned();
        assert_eq!(cached, Some(expected.clone()));
        assert_eq!(files.lookup("/flags/br/br.gif").unwrap().etag, expected);
        assert_ne!(files.lookup("/flags/ar/ar.gif").unwrap().etag, expected);
    }
}
