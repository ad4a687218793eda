//! SDP hold detection never panics and agrees with a simple model of RFC 3264 §8.4.

use proptest::prelude::*;
use ringmaster_core::sdp::{
    audio_streams, classify_reoffer, classify_reoffer_bytes, is_hold_offer, HoldChange,
    MediaDirection, SdpError, MAX_SDP_BYTES,
};

fn direction() -> impl Strategy<Value = Option<MediaDirection>> {
    proptest::option::of(proptest::sample::select(vec![
        MediaDirection::SendRecv,
        MediaDirection::SendOnly,
        MediaDirection::RecvOnly,
        MediaDirection::Inactive,
    ]))
}

/// A generated offer: session-level direction and null connection, one audio stream with its
/// own, and an unrelated video stream.
#[derive(Clone, Debug)]
struct Offer {
    session_dir: Option<MediaDirection>,
    session_null: bool,
    media_dir: Option<MediaDirection>,
    media_null: Option<bool>,
    crlf: bool,
}

impl Offer {
    fn render(&self) -> String {
        let mut lines = vec![
            "v=0".to_owned(),
            "o=- 4611731400430051336 2 IN IP4 127.0.0.1".to_owned(),
            "s=-".to_owned(),
        ];
        let addr = |null: bool| if null { "0.0.0.0" } else { "203.0.113.7" };
        lines.push(format!("c=IN IP4 {}", addr(self.session_null)));
        lines.push("t=0 0".to_owned());
        if let Some(d) = self.session_dir {
            lines.push(format!("a={d}"));
        }
        lines.push("m=audio 40000 UDP/TLS/RTP/SAVPF 111 0".to_owned());
        if let Some(null) = self.media_null {
            lines.push(format!("c=IN IP4 {}", addr(null)));
        }
        lines.push("a=rtpmap:111 opus/48000/2".to_owned());
        if let Some(d) = self.media_dir {
            lines.push(format!("a={d}"));
        }
        lines.push("m=video 40002 UDP/TLS/RTP/SAVPF 96".to_owned());
        lines.push("a=inactive".to_owned());
        let sep = if self.crlf { "\r\n" } else { "\n" };
        lines.join(sep) + sep
    }

    /// RFC 3264 §8.4 by hand: media attribute over session attribute, default sendrecv; a null
    /// connection address means the offerer will not receive.
    fn holds(&self) -> bool {
        let dir = self
            .media_dir
            .or(self.session_dir)
            .unwrap_or(MediaDirection::SendRecv);
        let null = self.media_null.unwrap_or(self.session_null);
        let receives = matches!(dir, MediaDirection::SendRecv | MediaDirection::RecvOnly);
        !receives || null
    }
}

fn offer() -> impl Strategy<Value = Offer> {
    (
        direction(),
        any::<bool>(),
        direction(),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(
            |(session_dir, session_null, media_dir, media_null, crlf)| Offer {
                session_dir,
                session_null,
                media_dir,
                media_null,
                crlf,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn classification_matches_the_rfc_model(previous in offer(), next in offer()) {
        let expected = match (previous.holds(), next.holds()) {
            (false, true) => HoldChange::RemoteHold,
            (true, false) => HoldChange::RemoteResume,
            _ => HoldChange::NoChange,
        };
        prop_assert_eq!(
            classify_reoffer(Some(&previous.render()), &next.render()),
            Ok(expected)
        );
        prop_assert_eq!(audio_streams(&next.render()).unwrap().len(), 1);
    }

    #[test]
    fn arbitrary_text_never_panics(body in "\\PC{0,400}") {
        let _ = is_hold_offer(&body);
        let _ = classify_reoffer(Some(&body), &body);
    }

    #[test]
    fn sdp_shaped_garbage_never_panics(
        lines in proptest::collection::vec("[vocmtab]=[ -~]{0,30}|[a-z]{0,3}=?|m=audio [0-9/]{0,8} [A-Z/]{0,8} [0-9 ]{0,5}", 0..30),
        crlf in any::<bool>(),
    ) {
        let body = lines.join(if crlf { "\r\n" } else { "\n" });
        match is_hold_offer(&body) {
            Ok(_) | Err(SdpError::MissingVersion | SdpError::MalformedLine { .. }
                | SdpError::BadMediaLine { .. } | SdpError::ConflictingDirection { .. }
                | SdpError::NoAudio) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(previous in proptest::collection::vec(any::<u8>(), 0..300), offer in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = classify_reoffer_bytes(Some(&previous), &offer);
    }
}

#[test]
fn oversized_bodies_are_refused_before_parsing() {
    let mut body = "v=0\r\nm=audio 1 RTP/AVP 0\r\n".to_owned();
    body.push_str(&"a=sendonly-padding\r\n".repeat(MAX_SDP_BYTES / 10));
    assert_eq!(
        is_hold_offer(&body),
        Err(SdpError::TooLarge {
            len: body.len(),
            max: MAX_SDP_BYTES
        })
    );
}

#[test]
fn a_real_webrtc_hold_reoffer_is_detected() {
    // Shape of a Telnyx/FreeSWITCH hold re-INVITE: media-level sendonly.
    let active = "v=0\r\no=FreeSWITCH 1 2 IN IP4 192.0.2.10\r\ns=FreeSWITCH\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 23456 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n";
    let hold = active.replace("a=sendrecv", "a=sendonly");
    assert_eq!(
        classify_reoffer(Some(active), &hold),
        Ok(HoldChange::RemoteHold)
    );
    assert_eq!(
        classify_reoffer(Some(&hold), active),
        Ok(HoldChange::RemoteResume)
    );
    assert_eq!(
        classify_reoffer(Some(active), active),
        Ok(HoldChange::NoChange)
    );
}
