//! Fluentd's secure-forward handshake (`shared_key`): before any frame, the listener sends
//! `HELO` with a fresh nonce; the forwarder answers `PING` with a digest of the shared key; the
//! listener answers `PONG` with its own digest, or refuses and closes. A peer without the key
//! never gets a frame in.
//!
//! - `["HELO", {"nonce": bin, "auth": "", "keepalive": true}]`
//! - `["PING", self_hostname, salt, sha512_hex(salt + self_hostname + nonce + shared_key), "", ""]`
//! - `["PONG", ok, reason, self_hostname, sha512_hex(salt + self_hostname + nonce + shared_key)]`
//!   (the listener's digest is over its own hostname)
//!
//! User authentication (`user_auth`, the PING's last two fields) is not supported.

use super::msgpack::Value;
use sha2::{Digest, Sha512};
use std::io::Read as _;

/// What a listener with a shared key knows.
#[derive(Clone)]
pub struct Key {
    pub shared: Vec<u8>,
    pub hostname: String,
}

/// A connection's nonce: 16 bytes from the kernel's random source, so a recorded PING is no
/// use on another connection.
pub fn nonce() -> std::io::Result<[u8; 16]> {
    let mut n = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

pub fn helo(nonce: &[u8; 16]) -> Vec<u8> {
    let mut out = vec![0x92];
    str(&mut out, b"HELO");
    out.push(0x83);
    str(&mut out, b"nonce");
    out.extend_from_slice(&[0xc4, 16]);
    out.extend_from_slice(nonce);
    str(&mut out, b"auth");
    str(&mut out, b"");
    str(&mut out, b"keepalive");
    out.push(0xc3);
    out
}

/// Checks a PING against the key; the PONG to send, and whether the peer is let in.
pub fn pong(ping: &Value, nonce: &[u8; 16], key: &Key) -> (Vec<u8>, bool) {
    let fields = match ping {
        Value::Array(f) if f.first().and_then(Value::as_bytes) == Some(b"PING") => f,
        _ => return (reply(false, "expected PING", key, b"", nonce), false),
    };
    let text = |i: usize| fields.get(i).and_then(Value::as_bytes).unwrap_or_default();
    let (hostname, salt, digest) = (text(1), text(2), text(3));
    let want = hex::encode(sha512(&[salt, hostname, nonce, &key.shared]));
    // Compared whole, not byte by byte to the first difference.
    let ok = digest.len() == want.len()
        && digest
            .iter()
            .zip(want.as_bytes())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0;
    let reason = if ok { "" } else { "shared_key mismatch" };
    (reply(ok, reason, key, salt, nonce), ok)
}

fn reply(ok: bool, reason: &str, key: &Key, salt: &[u8], nonce: &[u8; 16]) -> Vec<u8> {
    let mut out = vec![0x95];
    str(&mut out, b"PONG");
    out.push(if ok { 0xc3 } else { 0xc2 });
    str(&mut out, reason.as_bytes());
    str(&mut out, key.hostname.as_bytes());
    let digest = if ok {
        hex::encode(sha512(&[salt, key.hostname.as_bytes(), nonce, &key.shared]))
    } else {
        String::new()
    };
    str(&mut out, digest.as_bytes());
    out
}

fn sha512(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

fn str(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() < 32 {
        out.push(0xa0 | s.len() as u8);
    } else {
        out.push(0xd9);
        out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    }
    out.extend_from_slice(&s[..s.len().min(255)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::forward::msgpack::read;

    fn key() -> Key {
        Key {
            shared: b"s3cret".to_vec(),
            hostname: "aggregator-0".into(),
        }
    }

    fn ping(digest: &[u8]) -> Vec<u8> {
        let mut out = vec![0x96];
        for s in [b"PING" as &[u8], b"node-a", b"salt", digest, b"", b""] {
            str(&mut out, s);
        }
        out
    }

    #[test]
    fn the_right_key_gets_a_pong_with_the_listeners_digest_and_a_wrong_one_does_not() {
        let nonce = [7u8; 16];
        let good = hex::encode(sha512(&[b"salt", b"node-a", &nonce, b"s3cret"]));
        let sent = ping(good.as_bytes());
        let (bytes, ok) = pong(&read(&sent).unwrap().0, &nonce, &key());
        assert!(ok);
        let (v, _) = read(&bytes).unwrap();
        let Value::Array(f) = v else { panic!() };
        assert_eq!(f[1], Value::Bool(true));
        let theirs = hex::encode(sha512(&[b"salt", b"aggregator-0", &nonce, b"s3cret"]));
        assert_eq!(f[4].as_bytes(), Some(theirs.as_bytes()));
        for bad in [
            b"0".repeat(128),
            good.as_bytes()[..127].to_vec(),
            Vec::new(),
        ] {
            let (bytes, ok) = pong(&read(&ping(&bad)).unwrap().0, &nonce, &key());
            assert!(!ok);
            let (v, _) = read(&bytes).unwrap();
            let Value::Array(f) = v else { panic!() };
            assert_eq!(f[1], Value::Bool(false));
        }
        // Another nonce (a replayed PING) does not pass.
        let sent = ping(good.as_bytes());
        assert!(!pong(&read(&sent).unwrap().0, &[8; 16], &key()).1);
    }

    #[test]
    fn helo_offers_the_nonce_and_no_user_auth() {
        let bytes = helo(&[1; 16]);
        let (v, n) = read(&bytes).unwrap();
        assert_eq!(n, bytes.len());
        let Value::Array(f) = v else { panic!() };
        assert_eq!(f[0].as_bytes(), Some(&b"HELO"[..]));
        let Value::Map(opts) = &f[1] else { panic!() };
        assert!(opts.contains(&(Value::Str(b"nonce"), Value::Bin(&[1; 16]))));
        assert!(opts.contains(&(Value::Str(b"auth"), Value::Str(b""))));
    }
}
