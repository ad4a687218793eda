//! Webhook verification of a 10 KiB body against a bare Ed25519 verify of the same message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signature, SigningKey, Verifier as _};
use ringmaster_telnyx::signature::signed_message;
use ringmaster_telnyx::{WebhookSigner, WebhookVerifier};

/// The Java SDK's test seed, so runs are comparable.
const SEED_B64: &str = "i1xxSkIuQOY9H8laaRslIoYGTJ1NwBAFdjsQwiwJH04=";

fn bench(c: &mut Criterion) {
    let signer = WebhookSigner::from_base64(SEED_B64).expect("valid seed");
    let verifier = WebhookVerifier::new(&signer.public_key_b64()).expect("valid key");
    let body = vec![b'x'; 10 * 1024];
    let timestamp = "1767225600";
    let now = 1_767_225_600;
    let signature_b64 = signer.sign(timestamp, &body);

    let seed: [u8; 32] = STANDARD
        .decode(SEED_B64)
        .expect("base64")
        .try_into()
        .expect("32 bytes");
    let key = SigningKey::from_bytes(&seed).verifying_key();
    let message = signed_message(timestamp, &body);
    let signature =
        Signature::from_slice(&STANDARD.decode(&signature_b64).expect("base64")).expect("64 bytes");

    let mut group = c.benchmark_group("verify_10KiB");
    group.bench_function("webhook_verifier", |b| {
        b.iter(|| {
            verifier
                .verify(
                    Some(black_box(&signature_b64)),
                    Some(black_box(timestamp)),
                    black_box(&body),
                    now,
                )
                .expect("valid")
        })
    });
    group.bench_function("bare_ed25519", |b| {
        b.iter(|| {
            key.verify(black_box(&message), black_box(&signature))
                .expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
