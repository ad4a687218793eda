//! Just enough SDP (RFC 4566) to tell whether a re-INVITE puts the call on hold (RFC 3264 §8.4).
//!
//! Reads each audio stream's direction from `a=sendrecv|sendonly|recvonly|inactive` at session
//! or media level, and the legacy RFC 2543 hold `c=IN IP4 0.0.0.0`. Input is size-limited and
//! every problem is a typed error; nothing here panics on any input.

use crate::state::truncated;
use crate::trigger::Trigger;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Largest SDP body accepted. Real offers are a few KiB; anything far bigger is hostile.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// A media stream's direction attribute, seen from the side that wrote the SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaDirection {
    /// Sends and receives (the default).
    SendRecv,
    /// Only sends: the writer holds the other side.
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither sends nor receives.
    Inactive,
}

impl MediaDirection {
    fn from_attribute(attr: &str) -> Option<MediaDirection> {
        match attr {
            "sendrecv" => Some(MediaDirection::SendRecv),
            "sendonly" => Some(MediaDirection::SendOnly),
            "recvonly" => Some(MediaDirection::RecvOnly),
            "inactive" => Some(MediaDirection::Inactive),
            _ => None,
        }
    }

    /// The direction once the writer also refuses to receive (legacy `c=0.0.0.0` hold).
    fn without_receive(self) -> MediaDirection {
        match self {
            MediaDirection::SendRecv | MediaDirection::SendOnly => MediaDirection::SendOnly,
            MediaDirection::RecvOnly | MediaDirection::Inactive => MediaDirection::Inactive,
        }
    }

    /// Whether an offer with this direction puts the answerer on hold (RFC 3264 §8.4: the
    /// offerer stops receiving).
    pub fn is_hold(self) -> bool {
        matches!(self, MediaDirection::SendOnly | MediaDirection::Inactive)
    }

    /// The attribute name, e.g. `sendonly`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaDirection::SendRecv => "sendrecv",
            MediaDirection::SendOnly => "sendonly",
            MediaDirection::RecvOnly => "recvonly",
            MediaDirection::Inactive => "inactive",
        }
    }
}

impl fmt::Display for MediaDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a re-INVITE offer does to the call's hold state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldChange {
    /// The remote party put the call on hold.
    RemoteHold,
    /// The remote party took the call off hold.
    RemoteResume,
    /// The hold state is unchanged (e.g. a codec change or ICE restart).
    NoChange,
}

impl HoldChange {
    /// The trigger to apply to the call, if any.
    pub fn trigger(self) -> Option<Trigger> {
        match self {
            HoldChange::RemoteHold => Some(Trigger::RemoteHold),
            HoldChange::RemoteResume => Some(Trigger::RemoteResume),
            HoldChange::NoChange => None,
        }
    }
}

/// Why an SDP body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP_BYTES`].
    #[error("SDP body of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Body size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8 text.
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    /// The body does not start with `v=0`.
    #[error("SDP body does not start with v=0")]
    MissingVersion,
    /// A line is not `<letter>=<value>`.
    #[error("line {line} is not <type>=<value>: {text:?}")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
        /// The line (truncated).
        text: String,
    },
    /// An `m=` line without a media type and a numeric port.
    #[error("line {line} is not a valid m= line: {text:?}")]
    BadMediaLine {
        /// 1-based line number.
        line: usize,
        /// The line (truncated).
        text: String,
    },
    /// Two direction attributes at the same level, so the direction is ambiguous.
    #[error("line {line} repeats a direction attribute at the same level")]
    ConflictingDirection {
        /// 1-based line number of the second attribute.
        line: usize,
    },
    /// No enabled audio stream (port ≠ 0) to read a hold state from.
    #[error("SDP has no enabled audio stream")]
    NoAudio,
}

/// One `m=audio` stream of a parsed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioStream {
    /// The port from the `m=` line; 0 means the stream is disabled.
    pub port: u16,
    /// Effective direction: media-level attribute, else session-level, else sendrecv; then
    /// narrowed if the effective connection address is the legacy hold `0.0.0.0`.
    pub direction: MediaDirection,
}

#[derive(Default)]
struct Level {
    direction: Option<MediaDirection>,
    null_connection: Option<bool>,
}

struct Media {
    audio: bool,
    port: u16,
    level: Level,
}

/// Reads every `m=audio` stream of `body` with its effective direction.
pub fn audio_streams(body: &str) -> Result<Vec<AudioStream>, SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge {
            len: body.len(),
            max: MAX_SDP_BYTES,
        });
    }
    let mut session = Level::default();
    let mut media: Vec<Media> = Vec::new();
    let mut saw_version = false;
    for (index, raw) in body.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let malformed = || SdpError::MalformedLine {
            line: line_no,
            text: truncated(line),
        };
        let (kind, value) = match line.as_bytes() {
            [k, b'=', ..] if k.is_ascii_lowercase() => (*k, &line[2..]),
            _ => return Err(malformed()),
        };
        if !saw_version {
            if kind != b'v' || value.trim() != "0" {
                return Err(SdpError::MissingVersion);
            }
            saw_version = true;
            continue;
        }
        let level = match media.last_mut() {
            Some(m) => &mut m.level,
            None => &mut session,
        };
        match kind {
            b'm' => media.push(parse_media(value).ok_or_else(|| SdpError::BadMediaLine {
                line: line_no,
                text: truncated(line),
            })?),
            b'c' => level.null_connection = Some(is_null_connection(value)),
            b'a' => {
                if let Some(direction) = MediaDirection::from_attribute(value.trim()) {
                    if level.direction.replace(direction).is_some() {
                        return Err(SdpError::ConflictingDirection { line: line_no });
                    }
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return Err(SdpError::MissingVersion);
    }
    Ok(media
        .into_iter()
        .filter(|m| m.audio)
        .map(|m| {
            let direction = m
                .level
                .direction
                .or(session.direction)
                .unwrap_or(MediaDirection::SendRecv);
            let null = m
                .level
                .null_connection
                .or(session.null_connection)
                .unwrap_or(false);
            AudioStream {
                port: m.port,
                direction: if null {
                    direction.without_receive()
                } else {
                    direction
                },
            }
        })
        .collect())
}

fn parse_media(value: &str) -> Option<Media> {
    let mut fields = value.split_ascii_whitespace();
    let kind = fields.next()?;
    let port_field = fields.next()?;
    let port_text = port_field.split_once('/').map_or(port_field, |(p, _)| p);
    let port = port_text.parse::<u16>().ok()?;
    // Transport and at least one format are required by RFC 4566.
    fields.next()?;
    fields.next()?;
    Some(Media {
        audio: kind == "audio",
        port,
        level: Level::default(),
    })
}

/// `c=IN IP4 0.0.0.0` (optionally with a TTL suffix): RFC 2543's way to say "do not send to me".
fn is_null_connection(value: &str) -> bool {
    let mut fields = value.split_ascii_whitespace();
    let (Some("IN"), Some("IP4"), Some(addr)) = (fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    addr.split_once('/').map_or(addr, |(a, _)| a) == "0.0.0.0"
}

/// Whether an offer puts the answerer on hold: every enabled audio stream is held.
pub fn is_hold_offer(body: &str) -> Result<bool, SdpError> {
    let enabled: Vec<AudioStream> = audio_streams(body)?
        .into_iter()
        .filter(|s| s.port != 0)
        .collect();
    if enabled.is_empty() {
        return Err(SdpError::NoAudio);
    }
    Ok(enabled.iter().all(|s| s.direction.is_hold()))
}

/// Classifies a re-INVITE `offer` given whether the remote currently holds the call (the call
/// is in REMOTE_HOLD).
pub fn classify_against(remote_held: bool, offer: &str) -> Result<HoldChange, SdpError> {
    Ok(match (remote_held, is_hold_offer(offer)?) {
        (false, true) => HoldChange::RemoteHold,
        (true, false) => HoldChange::RemoteResume,
        _ => HoldChange::NoChange,
    })
}

/// Classifies a re-INVITE `offer` against the `previous` remote SDP of the call (`None` when
/// there is none, meaning not held).
pub fn classify_reoffer(previous: Option<&str>, offer: &str) -> Result<HoldChange, SdpError> {
    let held = match previous {
        Some(body) => is_hold_offer(body)?,
        None => false,
    };
    classify_against(held, offer)
}

/// Like [`classify_reoffer`] for raw bytes off the wire (checks size before UTF-8).
pub fn classify_reoffer_bytes(
    previous: Option<&[u8]>,
    offer: &[u8],
) -> Result<HoldChange, SdpError> {
    let text = |bytes: &[u8]| -> Result<String, SdpError> {
        if bytes.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge {
                len: bytes.len(),
                max: MAX_SDP_BYTES,
            });
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| SdpError::NotUtf8)
    };
    let previous = previous.map(text).transpose()?;
    classify_reoffer(previous.as_deref(), &text(offer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(session: &str, media: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{session}\
             m=audio 49170 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n{media}"
        )
    }

    #[test]
    fn media_level_direction_decides_hold_and_resume() {
        let active = sdp("", "a=sendrecv\r\n");
        let held = sdp("", "a=sendonly\r\n");
        let inactive = sdp("", "a=inactive\r\n");
        assert_eq!(
            classify_reoffer(Some(&active), &held),
            Ok(HoldChange::RemoteHold)
        );
        assert_eq!(
            classify_reoffer(Some(&active), &inactive),
            Ok(HoldChange::RemoteHold)
        );
        assert_eq!(
            classify_reoffer(Some(&held), &active),
            Ok(HoldChange::RemoteResume)
        );
        assert_eq!(
            classify_reoffer(Some(&held), &inactive),
            Ok(HoldChange::NoChange)
        );
        assert_eq!(classify_reoffer(None, &active), Ok(HoldChange::NoChange));
        // recvonly from the offerer is not a hold: it still wants our audio.
        assert_eq!(
            classify_reoffer(None, &sdp("", "a=recvonly\r\n")),
            Ok(HoldChange::NoChange)
        );
    }

    #[test]
    fn session_level_direction_applies_unless_media_overrides() {
        let held = sdp("a=sendonly\r\n", "");
        assert_eq!(is_hold_offer(&held), Ok(true));
        let overridden = sdp("a=sendonly\r\n", "a=sendrecv\r\n");
        assert_eq!(is_hold_offer(&overridden), Ok(false));
    }

    #[test]
    fn legacy_null_connection_is_a_hold() {
        let body =
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
        assert_eq!(classify_against(false, body), Ok(HoldChange::RemoteHold));
        let media_level =
            "v=0\ns=-\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0\nc=IN IP4 0.0.0.0/127\n";
        assert_eq!(is_hold_offer(media_level), Ok(true));
        let restored = "v=0\ns=-\nc=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0\nc=IN IP4 10.0.0.1\n";
        assert_eq!(is_hold_offer(restored), Ok(false));
    }

    #[test]
    fn only_enabled_audio_streams_count() {
        let body = "v=0\ns=-\nm=audio 0 RTP/AVP 0\nm=video 5000 RTP/AVP 96\na=sendonly\nm=audio 4000 RTP/AVP 0\na=sendonly\n";
        assert_eq!(is_hold_offer(body), Ok(true));
        let streams = audio_streams(body).unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].port, 0);
        let video_only = "v=0\ns=-\nm=video 5000 RTP/AVP 96\n";
        assert_eq!(is_hold_offer(video_only), Err(SdpError::NoAudio));
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        let big = format!("v=0\n{}", "a=x\n".repeat(MAX_SDP_BYTES / 4));
        assert!(matches!(
            is_hold_offer(&big),
            Err(SdpError::TooLarge { .. })
        ));
        assert_eq!(is_hold_offer(""), Err(SdpError::MissingVersion));
        assert_eq!(
            is_hold_offer("o=- 1 1 IN IP4 x\n"),
            Err(SdpError::MissingVersion)
        );
        assert!(matches!(
            is_hold_offer("v=0\nthis is not sdp\n"),
            Err(SdpError::MalformedLine { line: 2, .. })
        ));
        assert!(matches!(
            is_hold_offer("v=0\nm=audio port RTP/AVP 0\n"),
            Err(SdpError::BadMediaLine { line: 2, .. })
        ));
        assert!(matches!(
            is_hold_offer("v=0\nm=audio 70000 RTP/AVP 0\n"),
            Err(SdpError::BadMediaLine { .. })
        ));
        assert_eq!(
            is_hold_offer("v=0\nm=audio 1 RTP/AVP 0\na=sendonly\na=sendrecv\n"),
            Err(SdpError::ConflictingDirection { line: 4 })
        );
        assert_eq!(
            classify_reoffer_bytes(None, b"v=0\n\xff\xfe"),
            Err(SdpError::NotUtf8)
        );
        assert!(matches!(
            classify_reoffer_bytes(None, &vec![b'a'; MAX_SDP_BYTES + 1]),
            Err(SdpError::TooLarge { .. })
        ));
    }

    #[test]
    fn hold_change_names_the_trigger() {
        assert_eq!(HoldChange::RemoteHold.trigger(), Some(Trigger::RemoteHold));
        assert_eq!(
            HoldChange::RemoteResume.trigger(),
            Some(Trigger::RemoteResume)
        );
        assert_eq!(HoldChange::NoChange.trigger(), None);
    }
}
