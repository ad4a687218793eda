//! Fuzzes device bodys; the body and its properties are in `ringmaster_fuzz::device_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmaster_fuzz::device_body(data));
