//! Fuzzes SDP hold detection: any bytes, as a previous body and a re-INVITE offer, must give a
//! classification or a typed error, never a panic, and a body must agree with itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmaster_core::sdp::{classify_reoffer, classify_reoffer_bytes, is_hold_offer, HoldChange};

fuzz_target!(|data: &[u8]| {
    // Split the input in two at the first NUL: previous body, then offer.
    let (previous, offer) = match data.iter().position(|&b| b == 0) {
        Some(at) => (Some(&data[..at]), &data[at + 1..]),
        None => (None, data),
    };
    let _ = classify_reoffer_bytes(previous, offer);
    if let Ok(text) = std::str::from_utf8(offer) {
        if is_hold_offer(text).is_ok() {
            // An offer compared with itself never changes the hold state.
            assert_eq!(classify_reoffer(Some(text), text), Ok(HoldChange::NoChange));
        }
    }
});
