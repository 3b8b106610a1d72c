//! AuthSwitchRequest parsing (`handshake::parse_auth_switch`, what a backend
//! sends) and the token check (`scramble::check_token`, what a client's
//! answer goes through), with salt, stored hash and token taken from the
//! input and the arithmetic checked against a model written here.
//!
//! Input: `[20 salt] [20 stage2] token...`; the whole input is also parsed
//! as an AuthSwitchRequest payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::handshake::{self, NATIVE};
use myroute::protocol::scramble::{self, Secret, LEN};

fn sha1(parts: &[&[u8]]) -> [u8; LEN] {
    let mut h = sha1_smol::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.digest().bytes()
}

fuzz_target!(|data: &[u8]| {
    match handshake::parse_auth_switch(data) {
        Ok((plugin, plugin_data)) => {
            assert_eq!(data[0], 0xFE);
            if data.len() == 1 {
                assert_eq!((&plugin[..], plugin_data.len()), (&b"mysql_old_password"[..], 0));
            } else {
                assert!(!plugin.contains(&0));
                // 0xFE, the name, its NUL, the data and at most one NUL more.
                let used = 1 + plugin.len() + 1 + plugin_data.len();
                assert!(used == data.len() || used + 1 == data.len() && data[used] == 0);
            }
        }
        Err(_) => assert!(data.first() != Some(&0xFE) || !data[1..].contains(&0)),
    }

    if data.len() < 2 * LEN {
        return;
    }
    let salt: [u8; LEN] = data[..LEN].try_into().unwrap();
    let raw: [u8; LEN] = data[LEN..2 * LEN].try_into().unwrap();
    let token = &data[2 * LEN..];

    // myroute's own switch request parses back to its (cleaned) salt.
    let clean = scramble::salt_from_random(salt);
    assert!(clean.iter().all(|&b| (1..=127).contains(&b) && b != b'$'));
    let req = handshake::build_auth_switch(&clean);
    assert_eq!(handshake::parse_auth_switch(&req), Ok((NATIVE.to_vec(), clean.to_vec())));

    // The input's 20 bytes as the stored stage2: accepted exactly when the
    // model accepts, and then the recovered stage1 is consistent.
    let stage2 = Secret(raw);
    let mask = sha1(&[&salt, &raw]);
    let model_ok = token.len() == LEN && {
        let s1: Vec<u8> = token.iter().zip(mask).map(|(t, m)| t ^ m).collect();
        sha1(&[&s1]) == raw
    };
    match scramble::check_token(&salt, &stage2, token) {
        Some(stage1) => {
            assert!(model_ok);
            assert_eq!(sha1(&[&stage1.0]), raw);
            assert_eq!(&scramble::token_for(&salt, &stage1)[..], token);
        }
        None => assert!(!model_ok),
    }

    // The input's 20 bytes as stage1: the token the proxy would send a
    // backend with this salt verifies against SHA1(stage1), and no other
    // length of it does.
    let stage1 = Secret(raw);
    let made = scramble::token_for(&salt, &stage1);
    let stored = Secret(sha1(&[&raw]));
    assert_eq!(scramble::check_token(&salt, &stored, &made), Some(stage1.clone()));
    assert_eq!(scramble::check_token(&salt, &stored, &made[..LEN - 1]), None);
    let mut longer = made.to_vec();
    longer.push(token.first().copied().unwrap_or(0));
    assert_eq!(scramble::check_token(&salt, &stored, &longer), None);

    assert!(scramble::ct_eq(token, token));
    assert_eq!(scramble::ct_eq(token, &raw), token == raw);
});
