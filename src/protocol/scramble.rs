//! mysql_native_password arithmetic.
//!
//! Heads up (MySQL "Native Authentication"; MariaDB "Connection"):
//! - the server stores `stage2 = SHA1(SHA1(password))`, shown by
//!   `mysql.user.authentication_string` as `*` + 40 upper-case hex digits;
//! - the client answers a 20-byte salt with
//!   `token = SHA1(password) XOR SHA1(salt ‖ stage2)`;
//! - so `stage1 = token XOR SHA1(salt ‖ stage2)` recovers `SHA1(password)`,
//!   and the token is right iff `SHA1(stage1) == stage2`.
//!
//! The proxy keeps `stage1` just long enough to compute the token for the
//! backend's own salt. Nothing here is ever formatted into a log line:
//! [`Secret`] has no `Debug` that shows its bytes.

use sha1_smol::Sha1;

/// Length of a salt, a token, and both SHA1 stages.
pub const LEN: usize = 20;

/// Twenty secret bytes (a stage1 or stage2 value). Its `Debug` prints nothing
/// of the value, and it is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub [u8; LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite before the memory is reused. A volatile
        // write would need unsafe; black_box keeps the store from being
        // optimised away as dead.
        self.0 = [0; LEN];
        std::hint::black_box(&self.0);
    }
}

fn sha1(parts: &[&[u8]]) -> [u8; LEN] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.digest().bytes()
}

/// `stage2 = SHA1(SHA1(password))` for a clear password (for
/// `--hash-password` and tests).
pub fn hash_password(password: &[u8]) -> Secret {
    Secret(sha1(&[&sha1(&[password])]))
}

/// `SHA1(password)` for a clear password (the stage1 a client would prove;
/// what the health check logs in with).
pub fn stage1_of(password: &[u8]) -> Secret {
    Secret(sha1(&[password]))
}

/// Compares in time that depends only on the length, not on where the
/// first difference is.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Verifies a client's token for `salt` against the stored `stage2` and
/// returns the recovered stage1, or `None` if the token is wrong. A token
/// that is not 20 bytes long is wrong (it still costs the same SHA1 work).
pub fn check_token(salt: &[u8; LEN], stage2: &Secret, token: &[u8]) -> Option<Secret> {
    let mask = sha1(&[salt, &stage2.0]);
    let mut stage1 = [0u8; LEN];
    for i in 0..LEN {
        stage1[i] = token.get(i).copied().unwrap_or(0) ^ mask[i];
    }
    let stage1 = Secret(stage1);
    let ok = ct_eq(&sha1(&[&stage1.0]), &stage2.0) & (token.len() == LEN);
    ok.then_some(stage1)
}

/// The token that proves `stage1` to a server that sent `salt`.
pub fn token_for(salt: &[u8], stage1: &Secret) -> [u8; LEN] {
    let stage2 = sha1(&[&stage1.0]);
    let mask = sha1(&[salt, &stage2]);
    let mut token = [0u8; LEN];
    for i in 0..LEN {
        token[i] = stage1.0[i] ^ mask[i];
    }
    token
}

/// Overwrites the stack below the caller's frame, where the frames of the
/// functions that just computed with a stage1 (SHA1 state, temporaries,
/// moves) left copies of it. Call it right after such a call returns.
#[inline(never)]
pub fn wipe_stack() {
    let mut scratch = [0u8; 16 * 1024];
    std::hint::black_box(&mut scratch);
}

/// MariaDB's zero-configuration TLS proof (MariaDB 11.4 "SSL certificate
/// verification without a CA"): the info a server puts in the OK that ends
/// a mysql_native_password login over TLS, byte 0x01 then the upper-case
/// hex of `SHA256(stage2 ‖ greeting salt ‖ SHA256(certificate DER))`. Only
/// someone holding the account's hash and the certificate the client saw
/// can compute it, so the client may trust a certificate it has never seen.
#[cfg(feature = "tls")]
pub fn tls_proof(stage2: &Secret, greeting_salt: &[u8; LEN], cert_sha256: &[u8; 32]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&stage2.0);
    ctx.update(greeting_salt);
    ctx.update(cert_sha256);
    let mut info = vec![0x01];
    for b in ctx.finish().as_ref() {
        info.extend_from_slice(format!("{b:02X}").as_bytes());
    }
    info
}

/// Parses `*` + 40 hex digits (either case) into stage2.
pub fn parse_hash(s: &str) -> Option<Secret> {
    let hex = s.strip_prefix('*')?.as_bytes();
    if hex.len() != 2 * LEN {
        return None;
    }
    let mut out = [0u8; LEN];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(Secret(out))
}

/// Formats stage2 as MySQL shows it: `*` + 40 upper-case hex digits.
pub fn format_hash(stage2: &Secret) -> String {
    let mut s = String::with_capacity(41);
    s.push('*');
    for b in stage2.0 {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// Turns random bytes into a salt as MySQL's `generate_user_salt` does:
/// 7-bit, never NUL and never `$`, because clients treat it as a C string.
pub fn salt_from_random(mut raw: [u8; LEN]) -> [u8; LEN] {
    for b in &mut raw {
        *b &= 0x7F;
        if *b == 0 || *b == b'$' {
            *b += 1;
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values of MySQL's PASSWORD('...') (MySQL 4.1+ / MariaDB).
    const VECTORS: &[(&str, &str)] = &[
        ("password", "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
        ("root", "*81F5E21E35407D884A6CD4A731AEBFB6AF209E1B"),
        ("secret", "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"),
        ("mypass", "*6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4"),
    ];

    #[test]
    fn hash_password_matches_mysql_password_function() {
        for (pw, hash) in VECTORS {
            assert_eq!(format_hash(&hash_password(pw.as_bytes())), *hash, "{pw}");
            assert_eq!(parse_hash(hash), Some(hash_password(pw.as_bytes())));
        }
    }

    #[test]
    fn parse_hash_accepts_lower_case_and_rejects_junk() {
        let lower = VECTORS[0].1.to_ascii_lowercase();
        assert_eq!(parse_hash(&lower), Some(hash_password(b"password")));
        for bad in [
            "",
            "*",
            "2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19",
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1",
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E199",
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1EZZ",
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1É",
        ] {
            assert_eq!(parse_hash(bad), None, "{bad:?}");
        }
    }

    /// The client side of native auth, written the way clients write it.
    fn client_token(password: &[u8], salt: &[u8]) -> [u8; LEN] {
        let s1 = sha1(&[password]);
        let s2 = sha1(&[&s1]);
        let m = sha1(&[salt, &s2]);
        let mut t = [0u8; LEN];
        for i in 0..LEN {
            t[i] = s1[i] ^ m[i];
        }
        t
    }

    #[test]
    fn check_token_accepts_right_password_and_recovers_stage1() {
        let salt = salt_from_random(*b"0123456789abcdefghij");
        let stage2 = hash_password(b"password");
        let token = client_token(b"password", &salt);
        let stage1 = check_token(&salt, &stage2, &token).expect("accepted");
        assert_eq!(stage1, stage1_of(b"password"));
        // And the recovered stage1 logs in with a different (backend) salt.
        let backend_salt = salt_from_random(*b"zyxwvutsrqponmlkjihg");
        assert_eq!(token_for(&backend_salt, &stage1), client_token(b"password", &backend_salt));
    }

    #[test]
    fn check_token_rejects_wrong_password_wrong_salt_and_bad_lengths() {
        let salt = salt_from_random([7; LEN]);
        let other = salt_from_random([9; LEN]);
        let stage2 = hash_password(b"password");
        assert!(check_token(&salt, &stage2, &client_token(b"Password", &salt)).is_none());
        assert!(check_token(&salt, &stage2, &client_token(b"password", &other)).is_none());
        let good = client_token(b"password", &salt);
        assert!(check_token(&salt, &stage2, &good[..19]).is_none());
        let mut long = good.to_vec();
        long.push(0);
        assert!(check_token(&salt, &stage2, &long).is_none());
        assert!(check_token(&salt, &stage2, &[]).is_none());
    }

    #[test]
    fn salt_is_seven_bit_without_nul_or_dollar() {
        let raw: [u8; LEN] = std::array::from_fn(|i| [0u8, b'$', 0x80, 0xA4, 0xFF][i % 5]);
        let s = salt_from_random(raw);
        assert!(s.iter().all(|&b| (1..=127).contains(&b) && b != b'$'));
    }

    #[test]
    fn ct_eq_compares_whole_slices() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn secret_debug_shows_no_bytes() {
        assert_eq!(format!("{:?}", hash_password(b"password")), "Secret(..)");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn the_tls_proof_is_the_hash_mariadb_clients_check() {
        // Against a value computed independently (Python:
        // hashlib.sha256(bytes([0x11]*20 + [0x22]*20 + [0x33]*32))
        // .hexdigest().upper()).
        let proof = tls_proof(&Secret([0x11; LEN]), &[0x22; LEN], &[0x33; 32]);
        assert_eq!(proof[0], 0x01);
        assert_eq!(proof.len(), 65);
        assert_eq!(
            std::str::from_utf8(&proof[1..]).unwrap(),
            "73442A7195AFBB4807D116E1A0D1D412B5099CA5ED514DB6878ED476C3B15CDB"
        );
    }
}
