//! The accounts the login targets log in against: app_rw and app_ro with
//! password `PW`, nopw with none; nobody else exists.
#![allow(dead_code)]

use myroute::protocol::accept::Accounts;
use myroute::protocol::scramble::{Secret, LEN};

pub const PW: &[u8] = b"password";
/// The client address refusals name.
pub const HOST: &str = "192.0.2.7";

pub fn sha1(data: &[u8]) -> [u8; LEN] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

/// The accounts above, `PW` hashed into the `Secret`.
pub struct Known(pub Secret);

impl Accounts for Known {
    fn stage2(&self, user: &[u8]) -> Option<Option<&Secret>> {
        match user {
            b"app_rw" | b"app_ro" => Some(Some(&self.0)),
            b"nopw" => Some(None),
            _ => None,
        }
    }
}
