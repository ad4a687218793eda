//! Fuzzes pusher frames; the body and its properties are in `ringmaster_fuzz::pusher_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmaster_fuzz::pusher_frame(data));
