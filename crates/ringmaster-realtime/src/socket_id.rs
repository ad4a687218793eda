//! Pusher socket ids: two decimal integers joined by a dot, unique per cluster.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest digit run accepted on either side of the dot; keeps parsing bounded.
const MAX_PART_DIGITS: usize = 20;

/// The id of one WebSocket connection, `"<digits>.<digits>"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SocketId(String);

/// A string that is not `"<digits>.<digits>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid socket_id (expected digits.digits)")]
pub struct InvalidSocketId;

impl SocketId {
    /// Validates a socket id received from a client or an API caller.
    pub fn parse(raw: &str) -> Result<Self, InvalidSocketId> {
        let (a, b) = raw.split_once('.').ok_or(InvalidSocketId)?;
        let digits = |s: &str| {
            !s.is_empty() && s.len() <= MAX_PART_DIGITS && s.bytes().all(|c| c.is_ascii_digit())
        };
        if digits(a) && digits(b) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidSocketId)
        }
    }

    /// A fresh random id; two 10-digit halves make collisions across a cluster negligible.
    pub fn random() -> Self {
        let mut rng = rand::thread_rng();
        let a: u64 = rng.gen_range(1..10_000_000_000);
        let b: u64 = rng.gen_range(1..10_000_000_000);
        Self(format!("{a}.{b}"))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SocketId {
    type Error = InvalidSocketId;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<SocketId> for String {
    fn from(id: SocketId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pusher_shaped_ids_only() {
        assert!(SocketId::parse("4364658134.7333617527").is_ok());
        assert!(SocketId::parse("1.2").is_ok());
        for bad in [
            "", "1", "1.", ".1", "1.2.3", "a.1", "1.-2", " 1.2", "1.2 ", "１.2",
        ] {
            assert_eq!(SocketId::parse(bad), Err(InvalidSocketId), "{bad:?}");
        }
        assert!(SocketId::parse(&format!("{}.1", "9".repeat(21))).is_err());
    }

    #[test]
    fn random_ids_parse_and_differ() {
        let a = SocketId::random();
        let b = SocketId::random();
        assert!(SocketId::parse(a.as_str()).is_ok());
        assert_ne!(a, b);
    }
}
