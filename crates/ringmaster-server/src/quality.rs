//! Call quality analytics built from stored samples: the per-call report (MOS series, worst
//! 10 s window, time in each band, dominant impairment per device, leg and direction), the
//! fleet view for operators, and the CSV export. Retention is [`crate::retention`]'s.

use ringmaster_core::quality::{
    assess, Codec, Impairment, ImpairmentShares, MediaDirection, MediaSample, MosRating,
    NetworkStats,
};
use ringmaster_core::{CallSessionId, DeviceId};
use ringmaster_store::{QualitySample, SampleSource};
use serde::Serialize;
use std::collections::BTreeMap;

/// Length of the window the worst stretch of a stream is measured over.
pub const WINDOW_MS: u64 = 10_000;
/// Longest stretch one sample stands for in "time in each band"; a longer gap means the
/// device stopped reporting, not that quality held.
pub const MAX_SAMPLE_SPAN_MS: u64 = 10_000;
/// What a stream's last sample stands for when there is no earlier interval to copy: the
/// 5 s interval iOS and the Telnyx SDKs sample at.
pub const DEFAULT_SAMPLE_SPAN_MS: u64 = 5_000;
/// A window whose mean MOS is below this is a poor window (the spec's poor and bad bands).
pub const POOR_WINDOW_MOS: f64 = 3.6;

/// The E-model's view of a stored sample: unknown loss counts as none.
pub fn assessment(sample: &QualitySample) -> Option<ringmaster_core::quality::Assessment> {
    assess(MediaSample {
        network: NetworkStats {
            rtt_ms: sample.rtt_ms,
            jitter_ms: sample.jitter_ms,
            loss_pct: sample.loss_pct.unwrap_or(0.0),
        },
        codec: sample.codec,
        burst_ratio: sample.burst_ratio,
    })
    .ok()
}

/// One point of a stream's MOS series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MosPoint {
    /// When it was measured (device clock, ms).
    pub at: u64,
    /// The MOS used: the device's, else the E-model's.
    pub mos: f64,
    /// Its band.
    pub rating: MosRating,
    /// Whether `mos` is the E-model's estimate rather than the device's own.
    pub estimated: bool,
    /// The E-model's R for the network figures.
    pub r: f64,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
    /// Loss, percent, when known.
    pub loss_pct: Option<f64>,
    /// What each impairment costs (R points).
    pub impairments: ImpairmentShares,
}

/// The worst stretch of a stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    /// First sample time in the window.
    pub start: u64,
    /// `start` + [`WINDOW_MS`].
    pub end: u64,
    /// Mean MOS of the window's samples.
    pub mos: f64,
    /// Its band.
    pub rating: MosRating,
    /// How many samples it holds.
    pub samples: usize,
}

/// Milliseconds spent in each band.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BandTimes {
    /// MOS ≥ 4.3.
    pub excellent: u64,
    /// 4.0 ≤ MOS < 4.3.
    pub good: u64,
    /// 3.6 ≤ MOS < 4.0.
    pub fair: u64,
    /// 3.1 ≤ MOS < 3.6.
    pub poor: u64,
    /// MOS < 3.1.
    pub bad: u64,
}

impl BandTimes {
    fn add(&mut self, rating: MosRating, ms: u64) {
        let slot = match rating {
            MosRating::Excellent => &mut self.excellent,
            MosRating::Good => &mut self.good,
            MosRating::Fair => &mut self.fair,
            MosRating::Poor => &mut self.poor,
            MosRating::Bad => &mut self.bad,
        };
        *slot += ms;
    }
}

/// The report of one device's stream on one leg in one direction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamReport {
    /// The measuring device.
    pub device_id: DeviceId,
    /// Its platform.
    pub platform: String,
    /// The leg, when the device named it.
    pub leg: Option<String>,
    /// Which way the audio flows.
    pub direction: MediaDirection,
    /// The codec of the latest sample.
    pub codec: Codec,
    /// Mean of the MOS series.
    pub mean_mos: f64,
    /// The band of the mean.
    pub rating: MosRating,
    /// The MOS series, oldest first.
    pub series: Vec<MosPoint>,
    /// The 10 s window with the lowest mean MOS.
    pub worst_window: Option<Window>,
    /// Time in each band.
    pub time_in_band_ms: BandTimes,
    /// Mean cost of each impairment over the series (R points).
    pub impairments: ImpairmentShares,
    /// The impairment that costs most, when any costs at least 1 R point.
    pub dominant_impairment: Option<Impairment>,
}

fn point(sample: &QualitySample) -> Option<MosPoint> {
    let model = assessment(sample)?;
    Some(MosPoint {
        at: sample.at.as_millis(),
        mos: sample.mos,
        rating: MosRating::from_mos(sample.mos)?,
        estimated: sample.reported_mos.is_none(),
        r: model.r,
        rtt_ms: sample.rtt_ms,
        jitter_ms: sample.jitter_ms,
        loss_pct: sample.loss_pct,
        impairments: model.shares,
    })
}

/// The window of [`WINDOW_MS`] starting at a sample with the lowest mean MOS; ties go to the
/// earliest. `series` must be sorted by time.
pub fn worst_window(series: &[MosPoint]) -> Option<Window> {
    let mut worst: Option<Window> = None;
    for (i, first) in series.iter().enumerate() {
        let end = first.at.saturating_add(WINDOW_MS);
        let inside: Vec<f64> = series[i..]
            .iter()
            .take_while(|p| p.at < end)
            .map(|p| p.mos)
            .collect();
        let mos = inside.iter().sum::<f64>() / inside.len() as f64;
        if worst.as_ref().is_none_or(|w| mos < w.mos) {
            worst = Some(Window {
                start: first.at,
                end,
                mos,
                rating: MosRating::from_mos(mos)?,
                samples: inside.len(),
            });
        }
    }
    worst
}

/// Time in each band: each sample stands for the time until the next one (at most
/// [`MAX_SAMPLE_SPAN_MS`]); the last for the interval before it, or
/// [`DEFAULT_SAMPLE_SPAN_MS`] when it is alone.
pub fn time_in_bands(series: &[MosPoint]) -> BandTimes {
    let mut times = BandTimes::default();
    let mut last_span = DEFAULT_SAMPLE_SPAN_MS;
    for (i, p) in series.iter().enumerate() {
        let span = match series.get(i + 1) {
            Some(next) => next.at.saturating_sub(p.at).min(MAX_SAMPLE_SPAN_MS),
            None => last_span,
        };
        last_span = span.max(1);
        times.add(p.rating, span);
    }
    times
}

/// Groups a call's samples (as the store returns them: by device, leg, direction, time) into
/// one report per stream.
pub fn streams(samples: &[QualitySample]) -> Vec<StreamReport> {
    let mut groups: BTreeMap<(&DeviceId, &Option<String>, MediaDirection), Vec<&QualitySample>> =
        BTreeMap::new();
    for s in samples {
        groups
            .entry((&s.device_id, &s.leg, s.direction))
            .or_default()
            .push(s);
    }
    groups
        .into_iter()
        .filter_map(|((device, leg, direction), mut group)| {
            group.sort_by_key(|s| (s.at, s.seq, s.part));
            let series: Vec<MosPoint> = group.iter().filter_map(|s| point(s)).collect();
            let last = group.last()?;
            let mean_mos = series.iter().map(|p| p.mos).sum::<f64>() / series.len().max(1) as f64;
            let impairments = ImpairmentShares::mean(series.iter().map(|p| &p.impairments));
            Some(StreamReport {
                device_id: device.clone(),
                platform: last.platform.as_str().to_owned(),
                leg: leg.clone(),
                direction,
                codec: last.codec,
                rating: MosRating::from_mos(mean_mos)?,
                mean_mos,
                worst_window: worst_window(&series),
                time_in_band_ms: time_in_bands(&series),
                dominant_impairment: impairments.dominant(),
                impairments,
                series,
            })
        })
        .collect()
}

/// Whether any stream has a window below [`POOR_WINDOW_MOS`].
pub fn has_poor_window(streams: &[StreamReport]) -> bool {
    streams
        .iter()
        .filter_map(|s| s.worst_window.as_ref())
        .any(|w| w.mos < POOR_WINDOW_MOS)
}

/// How MOS is distributed over a set of samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MosDistribution {
    /// Samples counted.
    pub samples: usize,
    /// Mean MOS.
    pub mean_mos: f64,
    /// 10th percentile (nearest rank).
    pub p10: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Samples per band.
    pub bands: BTreeMap<MosRating, usize>,
}

impl MosDistribution {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            values[i - 1]
        };
        let mut bands: BTreeMap<MosRating, usize> =
            MosRating::ALL.iter().map(|r| (*r, 0)).collect();
        for v in &values {
            if let Some(r) = MosRating::from_mos(*v) {
                *bands.entry(r).or_default() += 1;
            }
        }
        Self {
            samples: values.len(),
            mean_mos: values.iter().sum::<f64>() / values.len() as f64,
            p10: rank(0.1),
            p50: rank(0.5),
            p90: rank(0.9),
            bands,
        }
    }
}

/// The distribution of one hour (UTC).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HourDistribution {
    /// Start of the hour, ms since the epoch.
    pub hour: u64,
    /// Its distribution.
    #[serde(flatten)]
    pub mos: MosDistribution,
}

/// The operators' view of quality over a time range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FleetView {
    /// Start of the range (inclusive), ms.
    pub from: u64,
    /// End of the range (exclusive), ms.
    pub to: u64,
    /// Whether the range held more samples than were read (the figures cover the oldest).
    pub truncated: bool,
    /// Every sample in the range.
    pub overall: MosDistribution,
    /// By device platform.
    pub by_platform: BTreeMap<String, MosDistribution>,
    /// By app version (`unknown` when not sent).
    pub by_app_version: BTreeMap<String, MosDistribution>,
    /// By network type (`unknown` when not sent).
    pub by_network_type: BTreeMap<String, MosDistribution>,
    /// By hour, oldest first.
    pub by_hour: Vec<HourDistribution>,
    /// Calls with samples in the range.
    pub calls: usize,
    /// Of those, calls with a stream whose worst 10 s window is below 3.6.
    pub calls_with_poor_window: usize,
    /// `calls_with_poor_window / calls` (0 without calls).
    pub poor_window_share: f64,
}

const HOUR_MS: u64 = 3_600_000;
const UNKNOWN: &str = "unknown";

/// Builds the fleet view from the samples of `[from, to)`.
pub fn fleet(samples: &[QualitySample], from: u64, to: u64, truncated: bool) -> FleetView {
    let mut by_platform: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_version: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_network: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_hour: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut by_call: BTreeMap<&CallSessionId, Vec<QualitySample>> = BTreeMap::new();
    for s in samples {
        by_platform
            .entry(s.platform.as_str().to_owned())
            .or_default()
            .push(s.mos);
        by_version
            .entry(s.app_version.clone().unwrap_or_else(|| UNKNOWN.into()))
            .or_default()
            .push(s.mos);
        by_network
            .entry(s.network_type.clone().unwrap_or_else(|| UNKNOWN.into()))
            .or_default()
            .push(s.mos);
        let at = s.at.as_millis();
        by_hour.entry(at - at % HOUR_MS).or_default().push(s.mos);
        by_call
            .entry(&s.call_session_id)
            .or_default()
            .push(s.clone());
    }
    let distributions = |groups: BTreeMap<String, Vec<f64>>| {
        groups
            .into_iter()
            .map(|(k, v)| (k, MosDistribution::of(v)))
            .collect()
    };
    let calls = by_call.len();
    let poor = by_call
        .values()
        .filter(|samples| has_poor_window(&streams(samples)))
        .count();
    FleetView {
        from,
        to,
        truncated,
        overall: MosDistribution::of(samples.iter().map(|s| s.mos).collect()),
        by_platform: distributions(by_platform),
        by_app_version: distributions(by_version),
        by_network_type: distributions(by_network),
        by_hour: by_hour
            .into_iter()
            .map(|(hour, v)| HourDistribution {
                hour,
                mos: MosDistribution::of(v),
            })
            .collect(),
        calls,
        calls_with_poor_window: poor,
        poor_window_share: if calls == 0 {
            0.0
        } else {
            poor as f64 / calls as f64
        },
    }
}

/// Columns of the CSV export, one row per sample.
pub const CSV_HEADER: [&str; 22] = [
    "call_session_id",
    "device_id",
    "platform",
    "app_version",
    "network_type",
    "leg",
    "direction",
    "codec",
    "source",
    "seq",
    "part",
    "at",
    "rtt_ms",
    "jitter_ms",
    "loss_pct",
    "jitter_buffer_discards",
    "bytes",
    "reported_mos",
    "mos",
    "rating",
    "r",
    "dominant_impairment",
];

fn source_name(source: SampleSource) -> &'static str {
    source.as_str()
}

/// A call's samples as CSV (RFC 4180), header first.
pub fn csv_export(samples: &[QualitySample]) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_HEADER)?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for s in samples {
        let model = assessment(s);
        out.write_record([
            s.call_session_id.to_string(),
            s.device_id.to_string(),
            s.platform.as_str().to_owned(),
            opt(s.app_version.clone()),
            opt(s.network_type.clone()),
            opt(s.leg.clone()),
            s.direction.as_str().to_owned(),
            s.codec.as_str().to_owned(),
            source_name(s.source).to_owned(),
            s.seq.to_string(),
            s.part.to_string(),
            s.at.as_millis().to_string(),
            s.rtt_ms.to_string(),
            s.jitter_ms.to_string(),
            opt(s.loss_pct.map(|v| v.to_string())),
            opt(s.jitter_buffer_discards.map(|v| v.to_string())),
            opt(s.bytes.map(|v| v.to_string())),
            opt(s.reported_mos.map(|v| v.to_string())),
            s.mos.to_string(),
            opt(MosRating::from_mos(s.mos).map(|r| r.as_str().to_owned())),
            opt(model.map(|m| format!("{:.2}", m.r))),
            opt(model
                .and_then(|m| m.shares.dominant())
                .map(|i| i.as_str().to_owned())),
        ])?;
    }
    out.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(at: u64, mos: f64) -> MosPoint {
        MosPoint {
            at,
            mos,
            rating: MosRating::from_mos(mos).unwrap(),
            estimated: true,
            r: 0.0,
            rtt_ms: 0.0,
            jitter_ms: 0.0,
            loss_pct: None,
            impairments: ImpairmentShares::default(),
        }
    }

    #[test]
    fn the_worst_window_is_the_lowest_ten_second_mean() {
        let series = [
            p(0, 4.4),
            p(5_000, 4.4),
            p(10_000, 3.0),
            p(15_000, 3.2),
            p(20_000, 4.4),
        ];
        let w = worst_window(&series).unwrap();
        assert_eq!((w.start, w.end, w.samples), (10_000, 20_000, 2));
        assert!((w.mos - 3.1).abs() < 1e-9);
        assert_eq!(w.rating, MosRating::Poor);
        assert_eq!(worst_window(&[]), None);
    }

    #[test]
    fn band_time_follows_sample_spacing_and_caps_gaps() {
        let series = [p(0, 4.4), p(5_000, 3.0), p(60_000, 4.1)];
        let t = time_in_bands(&series);
        assert_eq!(t.excellent, 5_000);
        assert_eq!(t.bad, MAX_SAMPLE_SPAN_MS);
        assert_eq!(t.good, MAX_SAMPLE_SPAN_MS);
        assert_eq!(time_in_bands(&[p(0, 3.7)]).fair, DEFAULT_SAMPLE_SPAN_MS);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = MosDistribution::of((1..=10).map(|i| 3.0 + f64::from(i) / 10.0).collect());
        assert_eq!(d.samples, 10);
        assert!((d.p10 - 3.1).abs() < 1e-9 && (d.p50 - 3.5).abs() < 1e-9);
        assert!((d.p90 - 3.9).abs() < 1e-9);
        assert_eq!(d.bands[&MosRating::Poor], 5);
        assert_eq!(d.bands[&MosRating::Fair], 4);
        assert_eq!(d.bands[&MosRating::Good], 1);
    }
}
