//! The quality analytics cases of the store conformance suite
//! ([`conformance`](crate::conformance) stamps them with the others).

use ringmaster_core::quality::{Codec, MediaDirection};
use ringmaster_core::{CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use serde_json::json;

use super::{AnalyticsEvent, QualityIngest, QualityItem, QualitySample, SampleSource};
use crate::conformance::Harness;
use crate::{DevicePlatform, StoreError};

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn sample(device: &str, seq: u64, part: u32, call: &str, at: u64, mos: f64) -> QualitySample {
    QualitySample {
        device_id: DeviceId::new(device),
        seq,
        part,
        call_session_id: CallSessionId::new(call),
        user_id: UserId::new("alice"),
        tenant_id: TenantId::new("t1"),
        at: t(at),
        received_at: t(at + 500),
        leg: Some("leg-1".into()),
        direction: MediaDirection::Inbound,
        codec: Codec::Opus,
        source: SampleSource::App,
        rtt_ms: 80.0,
        jitter_ms: 4.5,
        loss_pct: Some(1.25),
        burst_ratio: 1.0,
        jitter_buffer_discards: Some(3),
        bytes: Some(48_000),
        reported_mos: None,
        mos,
        platform: DevicePlatform::Ios,
        app_version: Some("2.4.0 (311)".into()),
        network_type: Some("wifi".into()),
    }
}

fn event(device: &str, seq: u64, call: &str, at: u64) -> AnalyticsEvent {
    AnalyticsEvent {
        device_id: DeviceId::new(device),
        seq,
        call_session_id: CallSessionId::new(call),
        user_id: UserId::new("alice"),
        tenant_id: TenantId::new("t1"),
        at: t(at),
        received_at: t(at + 500),
        kind: "answer_delay".into(),
        duration_ms: Some(2_300),
        detail: json!({ "reason": "user", "nested": { "n": 1 } }),
        platform: DevicePlatform::Android,
        app_version: None,
    }
}

fn one(s: QualitySample) -> QualityItem {
    QualityItem::Samples(vec![s])
}

/// A batch is stored once per (device, seq): resending it, or repeating a seq inside it,
/// counts duplicates and stores nothing twice; other devices have sequences of their own.
pub async fn quality_is_idempotent_per_device_and_seq(h: &dyn Harness) {
    let store = h.open().await;
    let report = QualityItem::Samples(vec![
        sample("d1", 3, 0, "call-1", 12_000, 4.1),
        sample("d1", 3, 1, "call-1", 17_000, 3.9),
    ]);
    let batch = vec![
        one(sample("d1", 1, 0, "call-1", 2_000, 4.4)),
        QualityItem::Event(event("d1", 2, "call-1", 1_000)),
        report,
        one(sample("d1", 1, 0, "call-1", 99_000, 1.0)),
    ];
    let first = store.record_quality(batch.clone()).await.unwrap();
    assert_eq!(
        first,
        QualityIngest {
            accepted: 3,
            duplicates: 1
        }
    );
    let again = store.record_quality(batch).await.unwrap();
    assert_eq!(
        again,
        QualityIngest {
            accepted: 0,
            duplicates: 4
        }
    );
    // Same seq, another device: its own item.
    let other = store
        .record_quality(vec![one(sample("d2", 1, 0, "call-1", 2_500, 3.0))])
        .await
        .unwrap();
    assert_eq!(other.accepted, 1);

    let data = store
        .call_quality(&CallSessionId::new("call-1"))
        .await
        .unwrap();
    let keys: Vec<(String, u64, u32)> = data
        .samples
        .iter()
        .map(|s| (s.device_id.to_string(), s.seq, s.part))
        .collect();
    assert_eq!(
        keys,
        [
            ("d1".to_owned(), 1, 0),
            ("d1".to_owned(), 3, 0),
            ("d1".to_owned(), 3, 1),
            ("d2".to_owned(), 1, 0),
        ]
    );
    assert_eq!(data.samples[0], sample("d1", 1, 0, "call-1", 2_000, 4.4));
    assert_eq!(data.events, vec![event("d1", 2, "call-1", 1_000)]);
    assert!(store
        .call_quality(&CallSessionId::new("call-2"))
        .await
        .unwrap()
        .samples
        .is_empty());
    store.close().await;
}

/// Samples come back by measurement time over a half-open range, capped by the limit; pruning
/// removes what was measured before the cut-off and survives a reopen.
pub async fn quality_reads_by_time_and_prunes(h: &dyn Harness) {
    let store = h.open().await;
    let mut batch: Vec<QualityItem> = (0..6)
        .map(|i| one(sample("d1", i + 1, 0, "call-1", 10_000 * (i + 1), 4.0)))
        .collect();
    batch.push(QualityItem::Event(event("d1", 50, "call-1", 15_000)));
    batch.push(QualityItem::Event(event("d1", 51, "call-1", 45_000)));
    store.record_quality(batch).await.unwrap();
    let ats = |v: Vec<QualitySample>| v.iter().map(|s| s.at.as_millis()).collect::<Vec<_>>();
    assert_eq!(
        ats(store
            .quality_samples_between(t(20_000), t(50_000), 100)
            .await
            .unwrap()),
        [20_000, 30_000, 40_000]
    );
    assert_eq!(
        ats(store
            .quality_samples_between(t(0), t(u64::MAX), 2)
            .await
            .unwrap()),
        [10_000, 20_000]
    );
    assert_eq!(store.prune_quality(t(30_000)).await.unwrap(), 3);
    store.close().await;

    let store = h.open().await;
    let data = store
        .call_quality(&CallSessionId::new("call-1"))
        .await
        .unwrap();
    assert_eq!(ats(data.samples), [30_000, 40_000, 50_000, 60_000]);
    assert_eq!(data.events.len(), 1);
    store.close().await;
}

/// A batch with one bad item is refused whole: nothing of it is stored, and its sequence
/// numbers stay free.
pub async fn invalid_quality_changes_nothing(h: &dyn Harness) {
    let store = h.open().await;
    let mut bad_mos = sample("d1", 2, 0, "call-1", 2_000, 4.0);
    bad_mos.mos = f64::NAN;
    let mut bad_loss = sample("d1", 2, 0, "call-1", 2_000, 4.0);
    bad_loss.loss_pct = Some(120.0);
    let mut bad_kind = event("d1", 2, "call-1", 2_000);
    bad_kind.kind = "has space".into();
    let mut gap = vec![sample("d1", 2, 0, "call-1", 2_000, 4.0)];
    gap.push(sample("d1", 2, 5, "call-1", 2_000, 4.0));
    for bad in [
        one(bad_mos),
        one(bad_loss),
        QualityItem::Event(bad_kind),
        QualityItem::Samples(gap),
        QualityItem::Samples(Vec::new()),
    ] {
        let batch = vec![one(sample("d1", 1, 0, "call-1", 1_000, 4.0)), bad];
        let err = store.record_quality(batch).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    }
    let data = store
        .call_quality(&CallSessionId::new("call-1"))
        .await
        .unwrap();
    assert!(data.samples.is_empty() && data.events.is_empty());
    let fresh = store
        .record_quality(vec![one(sample("d1", 1, 0, "call-1", 1_000, 4.0))])
        .await
        .unwrap();
    assert_eq!(fresh.accepted, 1);
    store.close().await;
}
