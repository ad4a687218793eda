//! Channel names: Pusher's grammar, the kind a prefix selects, and the per-user channel names.

use ringmaster_core::UserId;
use std::fmt;

/// Pusher's limit on a channel name, prefix included.
pub const MAX_CHANNEL_NAME_LEN: usize = 164;

/// What a channel's prefix asks of a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// No auth; anyone may subscribe.
    Public,
    /// `private-`: needs a signature over `socket_id:channel`.
    Private,
    /// `private-encrypted-`: auth like private; the server relays ciphertext it cannot read.
    PrivateEncrypted,
    /// `presence-`: needs a signature over `socket_id:channel:channel_data`, tracks members.
    Presence,
}

/// A channel name that passed Pusher's grammar: 1–164 characters from `[A-Za-z0-9_\-=@,.;]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

/// A channel name outside Pusher's grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel name (1-{MAX_CHANNEL_NAME_LEN} characters of A-Z a-z 0-9 _ - = @ , . ;)")]
pub struct InvalidChannelName;

impl ChannelName {
    /// Validates a channel name from a client frame or an API call.
    pub fn parse(raw: &str) -> Result<Self, InvalidChannelName> {
        let ok_char = |c: u8| c.is_ascii_alphanumeric() || b"_-=@,.;".contains(&c);
        if raw.is_empty() || raw.len() > MAX_CHANNEL_NAME_LEN || !raw.bytes().all(ok_char) {
            return Err(InvalidChannelName);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The kind the name's prefix selects.
    pub fn kind(&self) -> ChannelKind {
        if self.0.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if self.0.starts_with("private-") {
            ChannelKind::Private
        } else if self.0.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// Whether subscribing needs a signed auth string.
    pub fn requires_auth(&self) -> bool {
        self.kind() != ChannelKind::Public
    }

    /// The name as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `private-user.{user_id}`: where a user's devices receive call events
/// (laravel-echo's `echo.private('user.{id}')`).
pub fn user_channel(user: &UserId) -> Result<ChannelName, InvalidChannelName> {
    ChannelName::parse(&format!("private-user.{user}"))
}

/// `presence-user.{user_id}`: the same user's presence channel (which devices are online).
pub fn user_presence_channel(user: &UserId) -> Result<ChannelName, InvalidChannelName> {
    ChannelName::parse(&format!("presence-user.{user}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_and_kinds() {
        let kind = |s: &str| ChannelName::parse(s).map(|c| c.kind());
        assert_eq!(kind("calls"), Ok(ChannelKind::Public));
        assert_eq!(kind("private-user.42"), Ok(ChannelKind::Private));
        assert_eq!(
            kind("private-encrypted-x"),
            Ok(ChannelKind::PrivateEncrypted)
        );
        assert_eq!(kind("presence-room.1"), Ok(ChannelKind::Presence));
        assert_eq!(kind("a_b-c=d@e,f.g;h"), Ok(ChannelKind::Public));
        for bad in [
            "",
            "has space",
            "#server-to-user-1",
            "ü",
            "a/b",
            "a:b",
            "a*",
        ] {
            assert_eq!(ChannelName::parse(bad), Err(InvalidChannelName), "{bad:?}");
        }
        assert!(ChannelName::parse(&"a".repeat(164)).is_ok());
        assert!(ChannelName::parse(&"a".repeat(165)).is_err());
    }

    #[test]
    fn user_channels() {
        let user = UserId::new("42");
        assert_eq!(user_channel(&user).unwrap().as_str(), "private-user.42");
        assert_eq!(
            user_presence_channel(&user).unwrap().as_str(),
            "presence-user.42"
        );
        assert!(user_channel(&UserId::new("a b")).is_err());
    }
}
