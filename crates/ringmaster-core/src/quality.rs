//! Call quality: the MOS bands the apps already show (spec §7.3), an ITU-T G.107 E-model
//! estimate for devices that measure only latency, jitter and loss, and a summary of the
//! `call_quality_stats` Telnyx attaches to `call.hangup`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The band a mean opinion score falls in (spec §7.3 thresholds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MosRating {
    /// Below 3.1.
    Bad,
    /// 3.1 to 3.6.
    Poor,
    /// 3.6 to 4.0.
    Fair,
    /// 4.0 to 4.3.
    Good,
    /// 4.3 to 5.0.
    Excellent,
}

impl MosRating {
    /// The band of `mos`, or `None` when it is not a score (NaN, below 1 or above 5).
    pub fn from_mos(mos: f64) -> Option<MosRating> {
        if !mos.is_finite() || !(1.0..=5.0).contains(&mos) {
            return None;
        }
        Some(match mos {
            m if m >= 4.3 => MosRating::Excellent,
            m if m >= 4.0 => MosRating::Good,
            m if m >= 3.6 => MosRating::Fair,
            m if m >= 3.1 => MosRating::Poor,
            _ => MosRating::Bad,
        })
    }

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MosRating::Bad => "bad",
            MosRating::Poor => "poor",
            MosRating::Fair => "fair",
            MosRating::Good => "good",
            MosRating::Excellent => "excellent",
        }
    }
}

/// Network figures a device measures during a call.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// Round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Mean jitter, milliseconds.
    pub jitter_ms: f64,
    /// Packets lost, percent (0 to 100).
    pub loss_pct: f64,
}

/// Why network figures cannot be scored.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QualityError {
    /// A figure is negative, not finite, or (for loss) above 100 %.
    #[error("{field} must be a finite number in {range}, got {value}")]
    OutOfRange {
        /// Which figure.
        field: &'static str,
        /// The allowed range, for the message.
        range: &'static str,
        /// What was given.
        value: f64,
    },
}

fn check(
    field: &'static str,
    value: f64,
    max: f64,
    range: &'static str,
) -> Result<(), QualityError> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        Ok(())
    } else {
        Err(QualityError::OutOfRange {
            field,
            range,
            value,
        })
    }
}

/// Estimates MOS (1.0 to 4.5) from latency, jitter and loss with the simplified E-model used by
/// VoIP monitors: jitter counts double against latency, and each percent of loss costs 2.5 R.
pub fn estimate_mos(stats: NetworkStats) -> Result<f64, QualityError> {
    check("rtt_ms", stats.rtt_ms, 60_000.0, "0..=60000")?;
    check("jitter_ms", stats.jitter_ms, 60_000.0, "0..=60000")?;
    check("loss_pct", stats.loss_pct, 100.0, "0..=100")?;
    let effective_latency = stats.rtt_ms / 2.0 + 2.0 * stats.jitter_ms + 10.0;
    let delay_impairment = if effective_latency < 160.0 {
        effective_latency / 40.0
    } else {
        (effective_latency - 120.0) / 10.0
    };
    let r = (93.2 - delay_impairment - 2.5 * stats.loss_pct).clamp(0.0, 100.0);
    let mos = 1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r);
    Ok(mos.clamp(1.0, 4.5))
}

/// What the history shows about a call's media.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    /// Mean opinion score of what we received.
    pub mos: f64,
    /// Its band.
    pub rating: MosRating,
    /// Share of received packets skipped, percent, when Telnyx counted packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_pct: Option<f64>,
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Summarises Telnyx `call_quality_stats` (numbers as JSON numbers or strings); `None` when it
/// carries no usable inbound MOS, e.g. when no media flowed.
pub fn summarize_telnyx(stats: &Value) -> Option<QualitySummary> {
    let inbound = stats.get("inbound")?;
    let mos = number(inbound.get("mos"))?;
    let rating = MosRating::from_mos(mos)?;
    let skipped_pct = match (
        number(inbound.get("packet_count")),
        number(inbound.get("skip_packet_count")),
    ) {
        (Some(total), Some(skipped)) if total > 0.0 && skipped >= 0.0 && skipped <= total => {
            Some(skipped * 100.0 / total)
        }
        _ => None,
    };
    Some(QualitySummary {
        mos,
        rating,
        skipped_pct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bands_follow_the_spec_thresholds() {
        assert_eq!(MosRating::from_mos(4.4), Some(MosRating::Excellent));
        assert_eq!(MosRating::from_mos(4.3), Some(MosRating::Excellent));
        assert_eq!(MosRating::from_mos(4.1), Some(MosRating::Good));
        assert_eq!(MosRating::from_mos(3.7), Some(MosRating::Fair));
        assert_eq!(MosRating::from_mos(3.2), Some(MosRating::Poor));
        assert_eq!(MosRating::from_mos(2.0), Some(MosRating::Bad));
        assert_eq!(MosRating::from_mos(f64::NAN), None);
        assert_eq!(MosRating::from_mos(0.5), None);
        assert_eq!(MosRating::from_mos(5.5), None);
    }

    #[test]
    fn a_clean_network_scores_well_and_loss_and_delay_hurt() {
        let clean = estimate_mos(NetworkStats {
            rtt_ms: 40.0,
            jitter_ms: 2.0,
            loss_pct: 0.0,
        })
        .unwrap();
        assert_eq!(
            MosRating::from_mos(clean),
            Some(MosRating::Excellent),
            "{clean}"
        );
        let lossy = estimate_mos(NetworkStats {
            rtt_ms: 40.0,
            jitter_ms: 2.0,
            loss_pct: 8.0,
        })
        .unwrap();
        let slow = estimate_mos(NetworkStats {
            rtt_ms: 600.0,
            jitter_ms: 40.0,
            loss_pct: 0.0,
        })
        .unwrap();
        assert!(lossy < clean && slow < clean, "{lossy} {slow} {clean}");
        assert!(
            MosRating::from_mos(slow).unwrap() <= MosRating::Poor,
            "{slow}"
        );
        let hopeless = estimate_mos(NetworkStats {
            rtt_ms: 5000.0,
            jitter_ms: 500.0,
            loss_pct: 60.0,
        })
        .unwrap();
        assert_eq!(hopeless, 1.0);
    }

    #[test]
    fn impossible_figures_are_refused() {
        for stats in [
            NetworkStats {
                rtt_ms: -1.0,
                jitter_ms: 0.0,
                loss_pct: 0.0,
            },
            NetworkStats {
                rtt_ms: 10.0,
                jitter_ms: f64::INFINITY,
                loss_pct: 0.0,
            },
            NetworkStats {
                rtt_ms: 10.0,
                jitter_ms: 1.0,
                loss_pct: 101.0,
            },
        ] {
            assert!(matches!(
                estimate_mos(stats),
                Err(QualityError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn telnyx_stats_summarise_from_strings_or_numbers() {
        let stats = json!({"inbound": {"mos": "4.18", "packet_count": "1000", "skip_packet_count": "20"},
                           "outbound": {"packet_count": "990"}});
        let summary = summarize_telnyx(&stats).unwrap();
        assert_eq!(summary.rating, MosRating::Good);
        assert!((summary.skipped_pct.unwrap() - 2.0).abs() < 1e-9);
        let numeric = json!({"inbound": {"mos": 2.9}});
        assert_eq!(summarize_telnyx(&numeric).unwrap().rating, MosRating::Bad);
        assert_eq!(summarize_telnyx(&json!({"inbound": {"mos": "n/a"}})), None);
        assert_eq!(summarize_telnyx(&json!({})), None);
        assert_eq!(summarize_telnyx(&json!({"inbound": {"mos": "9"}})), None);
    }
}
