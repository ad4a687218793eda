//! Fuzzes SDK state-name parsing and mapping, and trigger JSON from device reports: any text
//! gives a value or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmaster_core::sdk::map_named;
use ringmaster_core::{Call, CallState, Direction, Platform, Timestamp, Trigger};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for platform in Platform::ALL {
        for prev in CallState::ALL {
            let _ = map_named(platform, text, Direction::Inbound, prev, None);
        }
    }
    if let Ok(trigger) = serde_json::from_str::<Trigger>(text) {
        let mut call = Call::new(Direction::Outbound, Timestamp::from_millis(0));
        let _ = call.apply(trigger, Timestamp::from_millis(1));
    }
    let _ = text.parse::<CallState>();
});
