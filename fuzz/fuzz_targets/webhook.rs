//! Fuzzes webhooks; the body and its properties are in `ringmaster_fuzz::webhook`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmaster_fuzz::webhook(data));
