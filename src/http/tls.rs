//! Trust and identity for `https://`: certificate authorities added to the
//! system's roots (`--cacert`, a server's `ca_file`), and a client
//! certificate for servers that require one (`--cert` and `--key`, a
//! server's `client_cert` and `client_key`), all read from PEM files.
//!
//! [`TlsFiles::check`] reads and parses the files when the configuration
//! is checked, so that a missing, unreadable or malformed file is a usage
//! or configuration error naming it, before any request. The files are read
//! again when the TLS client is built.
//!
//! The private key is a secret: no message ever quotes what was read from
//! it. A key that does not parse is named with the kind of problem only
//! ([`KeyProblem`]), never with the parser's own words, which quote the
//! offending line (a key flattened onto one line is the whole key).
//!
//! A client certificate is checked against its key by comparing the
//! certificate's public key with the key's, read straight from the
//! certificate's DER: rustls's own check parses the certificate with
//! webpki, which refuses X.509 version 1 certificates (what `openssl x509
//! -req` makes without extensions), though servers such as nginx accept
//! them from clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};

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

/// What is wrong with a private key file, in words that quote nothing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// No `-----BEGIN … PRIVATE KEY-----` section at all.
    NoKey,
    /// A `BEGIN` line not followed by the key and an `END` line on lines
    /// of their own, as when the key was flattened onto one line.
    Layout,
    /// Text between `BEGIN` and `END` that is not base64.
    NotBase64,
    /// A section too large to be a key.
    TooLarge,
    /// A key that parses, of a kind TLS cannot use.
    Unusable,
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoKey => "no PEM private key (-----BEGIN PRIVATE KEY-----)",
            Self::Layout => {
                "a PEM key whose BEGIN line, base64 and END line are not on lines of their own \
                 (was it flattened onto one line?)"
            }
            Self::NotBase64 => "a PEM key with text between its BEGIN and END lines that is not base64",
            Self::TooLarge => "a PEM section too large to be a key",
            Self::Unusable => "a private key of a kind TLS cannot use (RSA, ECDSA and Ed25519 keys are)",
        })
    }
}

impl KeyProblem {
    /// The problem a PEM parse error stands for, without its text: the
    /// parser quotes the line it stopped at, or the section's label, and a
    /// key flattened onto one line is its label.
    fn of(error: &pem::Error) -> Self {
        match error {
            pem::Error::IllegalSectionStart { .. } | pem::Error::MissingSectionEnd { .. } => Self::Layout,
            pem::Error::Base64Decode(_) => Self::NotBase64,
            pem::Error::SectionTooLarge => Self::TooLarge,
            _ => Self::NoKey,
        }
    }
}

/// A TLS file that cannot be used, named.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A certificate file holds no certificate.
    #[error("'{}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate file that is not PEM.
    #[error("'{}' is not a PEM certificate bundle ({reason})", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// The PEM parser's words (a certificate is no secret).
        reason: String,
    },
    /// A client certificate without its key, or a key without its
    /// certificate.
    #[error("{0}")]
    Unpaired(&'static str),
    /// The private key file cannot be used; what it holds is never said.
    #[error("'{}' holds {problem}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// The kind of problem.
        problem: KeyProblem,
    },
    /// The client certificate's DER does not parse as X.509.
    #[error("'{}' holds a certificate whose public key cannot be read (not X.509 DER)", path.display())]
    NotX509 {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key is not the client certificate's.
    #[error("'{}' and '{}' are not a pair: the key is not the certificate's", cert.display(), key.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The system's certificate authorities cannot be loaded.
    #[error("cannot load the system's certificate authorities ({0})")]
    Roots(String),
    /// rustls refused the set-up (no protocol version in common).
    #[error("rustls refused the set-up ({0})")]
    Setup(rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// One DER element (tag, length, contents) at the start of some bytes.
struct Der<'a> {
    tag: u8,
    /// Its contents.
    contents: &'a [u8],
    /// Its whole encoding: tag, length and contents.
    whole: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    /// The element at the start of `der`, if it parses.
    fn read(der: &'a [u8]) -> Option<Self> {
        let (&tag, after_tag) = der.split_first()?;
        let (&first, after_length) = after_tag.split_first()?;
        let (length, body) = if first < 0x80 {
            (usize::from(first), after_length)
        } else {
            let bytes = usize::from(first & 0x7f);
            if bytes == 0 || bytes > 4 || after_length.len() < bytes {
                return None;
            }
            let (length, body) = after_length.split_at(bytes);
            (length.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)), body)
        };
        if body.len() < length {
            return None;
        }
        let header = der.len() - body.len();
        Some(Self { tag, contents: &body[..length], whole: &der[..header + length], rest: &body[length..] })
    }
}

/// The DER tag of a SEQUENCE.
const SEQUENCE: u8 = 0x30;

/// The whole `SubjectPublicKeyInfo` of the X.509 certificate `der`, of any
/// version: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0]
/// version OPTIONAL, serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, … }, … }` (RFC 5280, 4.1).
fn subject_public_key_info(der: &[u8]) -> Option<&[u8]> {
    let certificate = Der::read(der).filter(|e| e.tag == SEQUENCE)?;
    let tbs = Der::read(certificate.contents).filter(|e| e.tag == SEQUENCE)?;
    let first = Der::read(tbs.contents)?;
    // The explicit version, absent from version 1 certificates.
    let mut fields = if first.tag == 0xa0 { first.rest } else { tbs.contents };
    // Serial number, signature algorithm, issuer, validity, subject.
    for _ in 0..5 {
        fields = Der::read(fields)?.rest;
    }
    Der::read(fields).filter(|e| e.tag == SEQUENCE).map(|e| e.whole)
}

impl TlsFiles {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }

    /// The extra certificate authorities, parsed (none without a CA file).
    fn authorities(&self) -> Result<Vec<CertificateDer<'static>>, (TlsFile, TlsError)> {
        let Some(path) = &self.ca_file else { return Ok(Vec::new()) };
        let pem = read(path).map_err(|e| (TlsFile::Ca, e))?;
        match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            Ok(_) => Err((TlsFile::Ca, TlsError::NoCertificate { path: path.clone() })),
            Err(e) => Err((TlsFile::Ca, TlsError::NotPem { path: path.clone(), reason: e.to_string() })),
        }
    }

    /// The client certificate's and key's files, if both are set; an
    /// error if only one is.
    fn client_files(&self) -> Result<Option<(&Path, &Path)>, (TlsFile, TlsError)> {
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err((TlsFile::Key, TlsError::Unpaired("a client certificate needs its private key"))),
            (None, Some(_)) => Err((TlsFile::Cert, TlsError::Unpaired("a private key needs its client certificate"))),
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
        }
    }

    /// The client certificate chain in `cert`, parsed.
    fn client_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, (TlsFile, TlsError)> {
        let pem = read(cert).map_err(|e| (TlsFile::Cert, e))?;
        match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(chain) if !chain.is_empty() => Ok(chain),
            _ => Err((TlsFile::Cert, TlsError::NoCertificate { path: cert.to_owned() })),
        }
    }

    /// The client certificate chain and its key, parsed and checked to be
    /// a pair, if both are set.
    fn identity(&self) -> Result<Option<Arc<CertifiedKey>>, (TlsFile, TlsError)> {
        let Some((cert, key)) = self.client_files()? else { return Ok(None) };
        let chain = Self::client_chain(cert)?;
        let key_problem = |problem| (TlsFile::Key, TlsError::Key { path: key.to_owned(), problem });
        let key_pem = read(key).map_err(|e| (TlsFile::Key, e))?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_problem(KeyProblem::of(&e)))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let signing_key =
            provider.key_provider.load_private_key(key_der).map_err(|_| key_problem(KeyProblem::Unusable))?;
        let spki = subject_public_key_info(&chain[0])
            .ok_or_else(|| (TlsFile::Cert, TlsError::NotX509 { path: cert.to_owned() }))?;
        // A key that cannot tell its public key is taken on trust, as rustls does.
        if signing_key.public_key().is_some_and(|public| public.as_ref() != spki) {
            return Err((TlsFile::Key, TlsError::Mismatch { cert: cert.to_owned(), key: key.to_owned() }));
        }
        Ok(Some(Arc::new(CertifiedKey::new(chain, signing_key))))
    }

    /// Reads and parses the files that are not secret (the authorities and
    /// the client certificate), and checks that a certificate comes with a
    /// key: what checking a configuration does, since the key may be
    /// readable by the service alone.
    pub fn check_public(&self) -> Vec<(TlsFile, TlsError)> {
        let mut problems = Vec::new();
        problems.extend(self.authorities().err());
        match self.client_files() {
            Err(problem) => problems.push(problem),
            Ok(Some((cert, _))) => problems.extend(Self::client_chain(cert).err()),
            Ok(None) => {}
        }
        problems
    }

    /// Reads and parses every file, the key included, and checks that the
    /// key is the certificate's: every problem, with the file it is about.
    pub fn check(&self) -> Vec<(TlsFile, TlsError)> {
        let mut problems = Vec::new();
        problems.extend(self.authorities().err());
        problems.extend(self.identity().err());
        problems
    }

    /// The TLS set-up of a client: the system's roots and the extra
    /// authorities, and the client certificate if any (ALPN is the
    /// client's to set). Built once and shared by every client of a server,
    /// for loading the system's roots costs milliseconds.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let authorities = self.authorities().map_err(|(_, e)| e)?;
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(authorities, Arc::clone(&provider))
            .map_err(|e| TlsError::Roots(e.to_string()))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        Ok(match self.identity().map_err(|(_, e)| e)? {
            Some(identity) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity))),
            None => builder.with_no_client_auth(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(problems: &[(TlsFile, TlsError)]) -> Vec<String> {
        problems.iter().map(|(_, e)| e.to_string()).collect()
    }

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
        assert!(messages(&problems)[0].starts_with(&format!("cannot read '{}': ", missing.display())), "{problems:?}");
        let files = TlsFiles { ca_file: Some(text.clone()), client_cert: Some(text.clone()), client_key: None };
        let problems = files.check();
        assert_eq!(problems.iter().map(|p| p.0).collect::<Vec<_>>(), [TlsFile::Ca, TlsFile::Key], "{problems:?}");
        assert!(messages(&problems)[0].contains("holds no PEM certificate"), "{problems:?}");
        let files = TlsFiles { client_cert: Some(text.clone()), client_key: Some(text), ..TlsFiles::default() };
        let expected = format!("'{}' holds no PEM certificate", dir.path().join("text.pem").display());
        assert!(messages(&files.check())[0].starts_with(&expected), "{:?}", files.check());
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
        let good = TlsFiles {
            ca_file: Some(a_cert.clone()),
            client_cert: Some(a_cert.clone()),
            client_key: Some(a_key.clone()),
        };
        assert!(good.check().is_empty(), "{:?}", good.check());
        let config = good.client_config().expect("a usable set-up");
        assert!(config.client_auth_cert_resolver.has_certs());

        let no_key = TlsFiles { client_key: Some(a_cert.clone()), ..good.clone() };
        let problems = no_key.check();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, TlsFile::Key);
        let expected = format!("'{}' holds no PEM private key", a_cert.display());
        assert!(messages(&problems)[0].starts_with(&expected), "{problems:?}");

        let mismatched = TlsFiles { client_key: Some(b_key.clone()), ..good };
        let expected = format!("'{}' and '{}' are not a pair", a_cert.display(), b_key.display());
        assert!(messages(&mismatched.check())[0].starts_with(&expected), "{:?}", mismatched.check());
        let error = mismatched.client_config().expect_err("another certificate's key");
        assert!(error.to_string().starts_with(&expected), "{error}");
    }

    #[test]
    fn a_key_that_does_not_parse_is_named_without_a_byte_of_it() {
        let dir = tempfile::tempdir().expect("a directory");
        let (cert, key) = self_signed(dir.path(), "a");
        let pem = std::fs::read_to_string(&key).expect("the key");
        let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let flattened = dir.path().join("flat.key");
        std::fs::write(&flattened, pem.replace('\n', " ")).expect("written");
        let broken = dir.path().join("broken.key");
        std::fs::write(&broken, pem.replace(body[0], &body[0].replace(|c: char| c.is_alphanumeric(), "!")))
            .expect("written");
        let unended = dir.path().join("unended.key");
        std::fs::write(&unended, pem.lines().take(2).collect::<Vec<_>>().join("\n")).expect("written");
        for (file, problem) in
            [(&flattened, KeyProblem::Layout), (&broken, KeyProblem::NotBase64), (&unended, KeyProblem::Layout)]
        {
            let files = TlsFiles { client_cert: Some(cert.clone()), client_key: Some(file.clone()), ca_file: None };
            let problems = files.check();
            assert!(
                matches!(&problems[..], [(TlsFile::Key, TlsError::Key { problem: p, .. })] if *p == problem),
                "{problems:?}"
            );
            let shown = format!("{} {:?}", messages(&problems)[0], problems);
            for line in &body {
                for piece in line.as_bytes().chunks(8).filter(|p| p.len() == 8) {
                    let piece = std::str::from_utf8(piece).expect("base64 is ASCII");
                    assert!(!shown.contains(piece), "{piece} of the key in {shown}");
                }
                let decimal = format!("{:?}", &line.as_bytes()[..8]);
                assert!(!shown.contains(decimal.trim_matches(['[', ']'])), "the key's bytes in {shown}");
            }
        }
    }

    #[test]
    fn the_public_key_is_read_from_certificates_of_any_version() {
        use rcgen::PublicKeyData as _;
        let key = rcgen::KeyPair::generate().expect("a key");
        let params = rcgen::CertificateParams::new(vec!["a".to_owned()]).expect("parameters");
        let der = params.self_signed(&key).expect("a certificate").der().to_vec();
        let spki = key.subject_public_key_info();
        assert_eq!(subject_public_key_info(&der), Some(spki.as_slice()));
        // The same certificate without its explicit version: version 1's form.
        let certificate = Der::read(&der).expect("a certificate");
        let tbs = Der::read(certificate.contents).expect("its tbsCertificate");
        let version = Der::read(tbs.contents).expect("its version");
        assert_eq!(version.tag, 0xa0);
        let (fields, signature) = (version.rest, tbs.rest);
        let sequence = |contents: &[u8]| {
            let mut der = vec![SEQUENCE, 0x82];
            der.extend_from_slice(&u16::try_from(contents.len()).expect("small").to_be_bytes());
            der.extend_from_slice(contents);
            der
        };
        let v1 = sequence(&[sequence(fields), signature.to_vec()].concat());
        assert_eq!(subject_public_key_info(&v1), Some(spki.as_slice()));
        for bad in [&[][..], &[0x30], &[0x30, 0x85, 1, 2, 3, 4, 5], &der[..der.len() / 2], &[0x02, 0x01, 0x00]] {
            assert_eq!(subject_public_key_info(bad), None, "{bad:?}");
        }
    }
}
