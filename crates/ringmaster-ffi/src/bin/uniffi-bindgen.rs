//! The UniFFI binding generator, built from the same `uniffi` version as the library so the
//! generated Swift, Kotlin and Python always match the scaffolding.

fn main() {
    uniffi::uniffi_bindgen_main()
}
