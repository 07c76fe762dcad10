//! Trust and identity for `https://`: certificate authorities added to the
//! system's roots (`--cacert`, a server's `ca_file`), and a client
//! certificate for servers that require one (`--cert` and `--key`, a
//! server's `client_cert` and `client_key`), all read from PEM files.
//!
//! [`TlsFiles::check`] reads and parses the files when the configuration
//! is checked, so that a missing, unreadable or malformed file is a usage
//! or configuration error naming it, before any request. The files are read
//! again when the TLS client is built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A client certificate chain (and the file it came from) and its private
/// key.
struct Identity<'a> {
    cert: &'a Path,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The PEM files of a server's TLS set-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// Certificate authorities to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (chain) to present.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub client_key: Option<PathBuf>,
}

/// Which of the files a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// [`TlsFiles::ca_file`].
    Ca,
    /// [`TlsFiles::client_cert`].
    Cert,
    /// [`TlsFiles::client_key`].
    Key,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))
}

impl TlsFiles {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }

    /// The extra certificate authorities, parsed (none without a CA file).
    fn authorities(&self) -> Result<Vec<CertificateDer<'static>>, (TlsFile, String)> {
        let Some(path) = &self.ca_file else { return Ok(Vec::new()) };
        let pem = read(path).map_err(|e| (TlsFile::Ca, e))?;
        let shown = path.display();
        match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            Ok(_) => Err((TlsFile::Ca, format!("'{shown}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"))),
            Err(e) => Err((TlsFile::Ca, format!("'{shown}' is not a PEM certificate bundle ({e})"))),
        }
    }

    /// The client certificate's and key's files, if both are set; an
    /// error if only one is.
    fn client_files(&self) -> Result<Option<(&Path, &Path)>, (TlsFile, String)> {
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err((TlsFile::Key, "a client certificate needs its private key".to_owned())),
            (None, Some(_)) => Err((TlsFile::Cert, "a private key needs its client certificate".to_owned())),
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
        }
    }

    /// The client certificate chain in `cert`, parsed.
    fn client_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, (TlsFile, String)> {
        let pem = read(cert).map_err(|e| (TlsFile::Cert, e))?;
        match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(chain) if !chain.is_empty() => Ok(chain),
            _ => Err((TlsFile::Cert, format!("'{}' holds no PEM certificate", cert.display()))),
        }
    }

    /// The client certificate chain and its key, parsed, if both are set.
    fn identity(&self) -> Result<Option<Identity<'_>>, (TlsFile, String)> {
        let Some((cert, key)) = self.client_files()? else { return Ok(None) };
        let chain = Self::client_chain(cert)?;
        let key_pem = read(key).map_err(|e| (TlsFile::Key, e))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| (TlsFile::Key, format!("'{}' holds no PEM private key ({e})", key.display())))?;
        Ok(Some(Identity { cert, chain, key }))
    }

    /// Reads and parses the files that are not secret (the authorities and
    /// the client certificate), and checks that a certificate comes with a
    /// key: what checking a configuration does, since the key may be
    /// readable by the service alone.
    pub fn check_public(&self) -> Vec<(TlsFile, String)> {
        let mut problems = Vec::new();
        problems.extend(self.authorities().err());
        match self.client_files() {
            Err(problem) => problems.push(problem),
            Ok(Some((cert, _))) => problems.extend(Self::client_chain(cert).err()),
            Ok(None) => {}
        }
        problems
    }

    /// Reads and parses every file, the key included: every problem, with
    /// the file it is about.
    pub fn check(&self) -> Vec<(TlsFile, String)> {
        let mut problems = Vec::new();
        problems.extend(self.authorities().err());
        problems.extend(self.identity().err());
        problems
    }

    /// The TLS set-up of a client: the system's roots and the extra
    /// authorities, and the client certificate if any (ALPN is the
    /// client's to set). Built once and shared by every client of a server,
    /// for loading the system's roots costs milliseconds.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let authorities = self.authorities().map_err(|(_, e)| e)?;
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(authorities, Arc::clone(&provider))
            .map_err(|e| format!("cannot load the system's certificate authorities ({e})"))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        Ok(match self.identity().map_err(|(_, e)| e)? {
            Some(Identity { cert, chain, key }) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("'{}' and its key are not a usable pair ({e})", cert.display()))?,
            None => builder.with_no_client_auth(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().expect("a directory");
        let missing = dir.path().join("missing.pem");
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").expect("written");
        let files = TlsFiles { ca_file: Some(missing.clone()), ..TlsFiles::default() };
        let problems = files.check();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, TlsFile::Ca);
        assert!(problems[0].1.starts_with(&format!("cannot read '{}': ", missing.display())), "{problems:?}");
        let files = TlsFiles { ca_file: Some(text.clone()), client_cert: Some(text.clone()), client_key: None };
        let problems = files.check();
        assert_eq!(problems.iter().map(|p| p.0).collect::<Vec<_>>(), [TlsFile::Ca, TlsFile::Key], "{problems:?}");
        assert!(problems[0].1.contains("holds no PEM certificate"), "{problems:?}");
        let files = TlsFiles { client_cert: Some(text.clone()), client_key: Some(text), ..TlsFiles::default() };
        assert_eq!(files.check()[0].1, format!("'{}' holds no PEM certificate", dir.path().join("text.pem").display()));
        assert!(TlsFiles::default().check().is_empty() && TlsFiles::default().is_empty());
    }

    /// A self-signed certificate and its key, as PEM files in `dir`.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("parameters");
        let cert = params.self_signed(&key).expect("a certificate");
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).expect("written");
        std::fs::write(&key_path, key.serialize_pem()).expect("written");
        (cert_path, key_path)
    }

    #[test]
    fn a_client_key_that_is_missing_or_not_the_certificates_is_named() {
        let dir = tempfile::tempdir().expect("a directory");
        let (a_cert, a_key) = self_signed(dir.path(), "a");
        let (_, b_key) = self_signed(dir.path(), "b");
        let good =
            TlsFiles { ca_file: Some(a_cert.clone()), client_cert: Some(a_cert.clone()), client_key: Some(a_key) };
        assert!(good.check().is_empty(), "{:?}", good.check());
        let config = good.client_config().expect("a usable set-up");
        assert!(config.client_auth_cert_resolver.has_certs());

        let no_key = TlsFiles { client_key: Some(a_cert.clone()), ..good.clone() };
        let problems = no_key.check();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, TlsFile::Key);
        assert!(problems[0].1.starts_with(&format!("'{}' holds no PEM private key", a_cert.display())), "{problems:?}");

        let mismatched = TlsFiles { client_key: Some(b_key), ..good };
        let error = mismatched.client_config().expect_err("another certificate's key");
        assert!(error.starts_with(&format!("'{}' and its key are not a usable pair", a_cert.display())), "{error}");
    }
}
