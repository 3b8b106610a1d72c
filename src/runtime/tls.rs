//! TLS on both legs, with rustls and its ring provider: the certificate
//! clients see (configured, or self-signed and made at start), how each
//! pool's servers are checked, and a connection's TLS state behind
//! [`crate::runtime::io::Stream`].
//!
//! TLS 1.2 and 1.3 only; rustls never renegotiates.

use crate::config::{ClientTls, Config, Error as ConfigError, FileRef, PoolTls, ServerTls};
use crate::runtime::sys;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ServerSessionMemoryCache;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// The ring provider (rustls marks it deprecated for lacking post-quantum
/// key exchange; it is the one that builds without a C toolchain beyond
/// ring's own, and static musl builds need exactly that).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A fingerprint as openssl prints it: `AB:CD:...`.
pub fn colon_hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// What clients are offered: the certificate, and its SHA-256 (what
/// MariaDB's zero-configuration proof hashes).
#[derive(Clone)]
pub struct ServerSide {
    pub config: Arc<ServerConfig>,
    pub cert_sha256: [u8; 32],
}

/// The certificate and key myroute made for itself (no `tls.cert`), kept
/// for the life of the process so reloads do not change it.
pub struct SelfSigned {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl SelfSigned {
    /// Makes an ECDSA P-256 certificate naming myroute and this host.
    pub fn new() -> Result<SelfSigned, String> {
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| "cannot make a key".to_string())?;
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
            .map_err(|_| "cannot use the key".to_string())?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let der = self_signed_der(&pair, &rng, host)?;
        Ok(SelfSigned {
            chain: vec![CertificateDer::from(der)],
            key: PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()),
        })
    }
}

/// The client leg's TLS for `cfg` (`None` with `tls = off`): the configured
/// certificate and key, or `generated`. Errors point at the line naming the
/// file at fault.
pub fn server_side(
    cfg: &Config,
    generated: &SelfSigned,
) -> Result<Option<ServerSide>, ConfigError> {
    if cfg.tls.mode == ClientTls::Off {
        return Ok(None);
    }
    let (chain, key, line) = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(cert), Some(key)) => (load_chain(cert)?, load_key(key)?, key.line),
        _ => (generated.chain.clone(), PrivateKeyDer::Pkcs8(generated.key.clone_key()), 0),
    };
    let cert_sha256 = sha256(chain.first().map_or(&[][..], |c| c.as_ref()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| ConfigError { line, msg: format!("tls: {e}") })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ConfigError {
            line,
            msg: format!("tls.key does not go with tls.cert: {e}"),
        })?;
    // Session resumption (IDs and tickets), so reconnecting clients skip
    // the full handshake.
    config.session_storage = ServerSessionMemoryCache::new(4096);
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| ConfigError { line, msg: format!("tls: {e}") })?;
    Ok(Some(ServerSide { config: Arc::new(config), cert_sha256 }))
}

/// How one pool logs in to its servers over TLS: the rustls settings, and
/// the name to check (for `verify_identity`).
#[derive(Clone)]
pub struct PoolSide {
    pub config: Arc<ClientConfig>,
    /// `tls_name`, if set; else each server's host as written.
    pub name: Option<String>,
}

/// The server leg's TLS for each pool of `cfg` (by `Config::pools` index;
/// `None` for a pool with `tls = off`).
pub fn pool_sides(cfg: &Config) -> Result<Vec<Option<PoolSide>>, ConfigError> {
    cfg.pools.iter().map(|p| pool_side(&p.tls)).collect()
}

fn pool_side(t: &PoolTls) -> Result<Option<PoolSide>, ConfigError> {
    let verifier: Arc<dyn ServerCertVerifier> = match t.mode {
        ServerTls::Off => return Ok(None),
        ServerTls::Preferred | ServerTls::Required => {
            Arc::new(Check { webpki: None, pin: t.fingerprint, name: false })
        }
        ServerTls::VerifyCa | ServerTls::VerifyIdentity => {
            let webpki = match &t.ca {
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    for cert in load_chain(ca)? {
                        roots.add(cert).map_err(|e| ConfigError {
                            line: ca.line,
                            msg: format!("{}: {e}", ca.path),
                        })?;
                    }
                    let v =
                        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                            .build()
                            .map_err(|e| ConfigError {
                                line: ca.line,
                                msg: format!("{}: {e}", ca.path),
                            })?;
                    Some(v)
                }
                None => None,
            };
            Arc::new(Check {
                webpki,
                pin: t.fingerprint,
                name: t.mode == ServerTls::VerifyIdentity,
            })
        }
    };
    let line = t.cert.as_ref().map_or(0, |c| c.line);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| ConfigError { line, msg: format!("tls: {e}") })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_chain(cert)?, load_key(key)?)
            .map_err(|e| ConfigError {
                line: key.line,
                msg: format!("tls_key does not go with tls_cert: {e}"),
            })?,
        _ => builder.with_no_client_auth(),
    };
    // Resumption is on by default: one cache per pool, an entry per server
    // name, so reconnecting skips the full handshake.
    Ok(Some(PoolSide { config: Arc::new(config), name: t.name.clone() }))
}

/// The name a server's certificate is checked against: `name`, or the
/// host as written. (An IP address is checked as one.)
pub fn server_name(side: &PoolSide, host: &str) -> Option<ServerName<'static>> {
    let name = side.name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string()).ok()
}

/// Checks the files `cfg` names (certificates, keys, CAs) as start-up would,
/// for `--check`.
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    let generated = SelfSigned::new().map_err(|msg| ConfigError { line: 0, msg })?;
    server_side(cfg, &generated)?;
    pool_sides(cfg)?;
    Ok(())
}

fn load_chain(f: &FileRef) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let fail = |msg: String| ConfigError { line: f.line, msg: format!("{}: {msg}", f.path) };
    std::fs::metadata(&f.path).map_err(|e| fail(e.to_string()))?;
    let chain: Vec<_> = CertificateDer::pem_file_iter(&f.path)
        .map_err(|e| fail(pem_error(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(pem_error(e)))?;
    if chain.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(chain)
}

fn load_key(f: &FileRef) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let fail = |msg: String| ConfigError { line: f.line, msg: format!("{}: {msg}", f.path) };
    std::fs::metadata(&f.path).map_err(|e| fail(e.to_string()))?;
    PrivateKeyDer::from_pem_file(&f.path).map_err(|e| fail(pem_error(e)))
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not PEM: {other:?}"),
    }
}

/// A server certificate check: the chain (and, if `name`, the name) against
/// CAs when there are some, the pin when there is one, or nothing (the
/// `preferred` and `required` modes). Handshake signatures are checked
/// when something is trusted: with nothing trusted, a signature only proves
/// that the peer holds a key nobody vouched for, and checking it would
/// refuse servers whose certificates the signature code cannot read (X.509
/// v1, as old MySQL tools made), which MySQL's `ssl-mode=REQUIRED` accepts.
#[derive(Debug)]
struct Check {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<[u8; 32]>,
    name: bool,
}

impl Check {
    fn trusts_nothing(&self) -> bool {
        self.webpki.is_none() && self.pin.is_none()
    }
}

impl ServerCertVerifier for Check {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = self.pin {
            if sha256(end_entity.as_ref()) != pin {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        if let Some(v) = &self.webpki {
            match v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                // verify_ca: the chain was good, only the name was not.
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                )) if !self.name => {}
                other => {
                    other?;
                }
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.trusts_nothing() {
            return Ok(HandshakeSignatureValid::assertion());
        }
        verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.trusts_nothing() {
            return Ok(HandshakeSignatureValid::assertion());
        }
        verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// A connection's TLS, as [`crate::runtime::io::Stream`] uses it.
pub struct Tls {
    pub conn: rustls::Connection,
    /// The certificate myroute presented (the client leg).
    pub cert_sha256: Option<[u8; 32]>,
    /// The handshake's end has been reported.
    pub reported: bool,
    /// Why it failed, until reported.
    pub failed: Option<&'static str>,
    /// The socket came back short since the read pass began, and the pass
    /// may trust that: nothing more is there until the next readiness
    /// event, so no `recv` is spent to hear it say "would block".
    pub socket_empty: bool,
    /// The read pass may end on a short `recv` (not when the peer has
    /// hung up: then only the end of the stream ends it).
    pub trust_short: bool,
}

impl Tls {
    /// The server side of a client's TLS, after its SSLRequest.
    pub fn server(side: &ServerSide) -> Result<Tls, &'static str> {
        let conn = rustls::ServerConnection::new(side.config.clone()).map_err(|_| "setup")?;
        Ok(Tls::new(conn.into(), Some(side.cert_sha256)))
    }

    /// The client side toward a server, after myroute's SSLRequest.
    pub fn client(side: &PoolSide, name: ServerName<'static>) -> Result<Tls, &'static str> {
        let conn = rustls::ClientConnection::new(side.config.clone(), name).map_err(|_| "setup")?;
        Ok(Tls::new(conn.into(), None))
    }

    fn new(mut conn: rustls::Connection, cert_sha256: Option<[u8; 32]>) -> Tls {
        // Bounds what a slow peer makes rustls hold toward it.
        conn.set_buffer_limit(Some(64 * 1024));
        Tls {
            conn,
            cert_sha256,
            reported: false,
            failed: None,
            socket_empty: false,
            trust_short: false,
        }
    }

    /// The negotiated version and cipher suite.
    pub fn describe(&self) -> (&'static str, String) {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let cipher =
            self.conn.negotiated_cipher_suite().map_or("", |s| s.suite().as_str().unwrap_or(""));
        (version, cipher.to_string())
    }
}

/// What was wrong with a peer's certificate, in a few words.
fn certificate_reason(e: &rustls::CertificateError) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        // Only the pin check fails this way.
        C::ApplicationVerificationFailure => "certificate does not match tls_fingerprint",
        C::UnknownIssuer => "certificate from an issuer not in tls_ca",
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "certificate not valid for tls_name"
        }
        C::Expired | C::ExpiredContext { .. } => "certificate expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet",
        C::BadSignature => "certificate with a bad signature",
        _ => "certificate",
    }
}

/// Why TLS failed, in a few words for the access log and the ERR a client
/// gets.
pub fn reason(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::AlertReceived(_) => "alert",
        rustls::Error::InvalidCertificate(c) => certificate_reason(c),
        rustls::Error::General(_) => "certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "bad record"
        }
        rustls::Error::PeerMisbehaved(_) => "peer misbehaved",
        rustls::Error::DecryptError => "decrypt",
        _ => "handshake",
    }
}

// ----- the self-signed certificate, in DER (RFC 5280) -----

/// A DER element: tag, definite length, contents.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    match n {
        0..=0x7F => out.push(n as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        _ => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

/// OIDs, already DER-encoded as contents.
const OID_ECDSA_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];

/// A self-signed X.509 v3 certificate for `pair`'s public key: CN "myroute
/// on HOST", names localhost, HOST, 127.0.0.1 and ::1, valid from a day ago
/// with no end (RFC 5280's 99991231235959Z).
fn self_signed_der(
    pair: &ring::signature::EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
    host: &str,
) -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom;
    use ring::signature::KeyPair;
    let algorithm = seq(&[&der(0x06, OID_ECDSA_SHA256)]);
    let cn = if host.is_empty() { "myroute".to_string() } else { format!("myroute on {host}") };
    let name = seq(&[&der(0x31, &seq(&[&der(0x06, OID_COMMON_NAME), &der(0x0C, cn.as_bytes())]))]);
    let mut serial = [0u8; 16];
    rng.fill(&mut serial).map_err(|_| "no random bytes".to_string())?;
    serial[0] &= 0x7F; // positive
    serial[0] |= 0x40; // and no leading zero byte to strip
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let [y, mo, d, h, mi, s] = sys::civil_utc(now.as_secs().saturating_sub(86_400));
    let not_before = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
    let validity = seq(&[&der(0x17, not_before.as_bytes()), &der(0x18, b"99991231235959Z")]);
    let spki = seq(&[
        &seq(&[&der(0x06, OID_EC_PUBLIC_KEY), &der(0x06, OID_P256)]),
        &der(0x03, &[&[0u8][..], pair.public_key().as_ref()].concat()),
    ]);
    let mut names = vec![der(0x82, b"localhost")];
    if !host.is_empty() && host != "localhost" {
        names.push(der(0x82, host.as_bytes()));
    }
    names.push(der(0x87, &[127, 0, 0, 1]));
    names.push(der(0x87, &std::net::Ipv6Addr::LOCALHOST.octets()));
    let san = seq(&[&der(0x06, OID_SUBJECT_ALT_NAME), &der(0x04, &der(0x30, &names.concat()))]);
    let extensions = der(0xA3, &seq(&[&san]));
    let tbs = seq(&[
        &der(0xA0, &der(0x02, &[2])), // version 3
        &der(0x02, &serial),
        &algorithm,
        &name,
        &validity,
        &name,
        &spki,
        &extensions,
    ]);
    let signature = pair.sign(rng, &tbs).map_err(|_| "cannot sign".to_string())?;
    Ok(seq(&[&tbs, &algorithm, &der(0x03, &[&[0u8][..], signature.as_ref()].concat())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_serves_tls_and_names_myroute() {
        let made = SelfSigned::new().unwrap();
        let cfg = crate::config::parse(
            "pool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n",
        )
        .unwrap();
        let side = server_side(&cfg, &made).unwrap().expect("tls is on by default");
        assert_eq!(side.cert_sha256, sha256(made.chain[0].as_ref()));
        // The DER parses as a certificate webpki accepts the shape of.
        let cert = rustls::pki_types::CertificateDer::from(made.chain[0].as_ref().to_vec());
        let der = cert.as_ref();
        assert_eq!(der[0], 0x30);
        let text = String::from_utf8_lossy(der);
        assert!(text.contains("myroute"), "CN names myroute");
        assert!(text.contains("localhost"));
        // A client that trusts it by pin completes a handshake in memory.
        let pin = Some(side.cert_sha256);
        let pool = PoolTls { mode: ServerTls::Required, fingerprint: pin, ..PoolTls::default() };
        let client = pool_side(&pool).unwrap().unwrap();
        let mut c = Tls::client(&client, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut s = Tls::server(&side).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.conn.write_tls(&mut buf).unwrap();
            s.conn.read_tls(&mut &buf[..]).unwrap();
            s.conn.process_new_packets().unwrap();
            let mut buf = Vec::new();
            s.conn.write_tls(&mut buf).unwrap();
            c.conn.read_tls(&mut &buf[..]).unwrap();
            c.conn.process_new_packets().unwrap();
        }
        assert!(!c.conn.is_handshaking() && !s.conn.is_handshaking());
        // The wrong pin fails.
        let pool =
            PoolTls { mode: ServerTls::Required, fingerprint: Some([0; 32]), ..PoolTls::default() };
        let client = pool_side(&pool).unwrap().unwrap();
        let mut c = Tls::client(&client, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut s = Tls::server(&side).unwrap();
        let mut failed = false;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.conn.write_tls(&mut buf).unwrap();
            s.conn.read_tls(&mut &buf[..]).unwrap();
            let _ = s.conn.process_new_packets();
            let mut buf = Vec::new();
            let _ = s.conn.write_tls(&mut buf);
            let _ = c.conn.read_tls(&mut &buf[..]);
            failed |= c.conn.process_new_packets().is_err();
        }
        assert!(failed);
    }

    #[test]
    fn bad_files_are_errors_at_their_line() {
        let dir = std::env::temp_dir().join(format!("myroute-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        let text = |cert: &std::path::Path| {
            format!(
                "pool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\ntls.cert = {}\ntls.key = {}\n",
                cert.display(),
                junk.display()
            )
        };
        let made = SelfSigned::new().unwrap();
        for (cert, want) in [(&missing, "No such file"), (&junk, "no PEM certificate")] {
            let cfg = crate::config::parse(&text(cert)).unwrap();
            let e = server_side(&cfg, &made).err().expect("refused");
            assert_eq!(e.line, 4, "{}", e.msg);
            assert!(e.msg.contains(want), "{}", e.msg);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
