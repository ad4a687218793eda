//! Call quality: the MOS bands the apps already show (spec §7.3), an ITU-T G.107 E-model for
//! what devices measure (round-trip time, jitter, loss, codec), and a summary of the
//! `call_quality_stats` Telnyx attaches to `call.hangup`.
//!
//! # The E-model, simplified for VoIP
//!
//! `R = Ro − Is − Id − Ie,eff + A` (G.107 (06/2015) §7.1), with:
//!
//! - `Ro − Is`: G.107's values for its default parameters (Table 3): `Ro = 94.77`,
//!   `Is = 1.41`. Handsets are assumed to have default loudness ratings, sidetone and noise.
//! - `Id = Idte + Idle + Idd` from the one-way mouth-to-ear delay `Ta`, with `T = Ta` (the echo
//!   path is the whole one-way path) and `Tr = 2·Ta`. `Idd` is G.107's formula (zero up to
//!   100 ms). `Idle` is G.107's listener-echo formula with `WEPL = 110`. `Idte` is G.107's
//!   talker-echo formula with `TELR = 65 dB` and `STMR = 15 dB`, clamped at zero: below a few
//!   milliseconds the closed form dips to −0.24, a "bonus" for echo that is an artefact of the
//!   fit and would make quality rise with delay.
//! - `Ie,eff = Ie + (95 − Ie)·Ppl/(Ppl/BurstR + Bpl)` (G.107 §7.5) with per-codec `Ie` and `Bpl`
//!   ([`Codec::profile`]); `BurstR = 1` is random loss, larger is burstier.
//! - `A = 0` unless the caller says otherwise (G.107 gives no advantage to wired VoIP).
//! - MOS from R by G.107 Annex B: `1 + 0.035R + R(R−60)(100−R)·7·10⁻⁶`, 1 below `R = 0` and
//!   4.5 above `R = 100`, and never below 1: the cubic dips to 0.99 for `0 < R < 6.5`, which
//!   would let more loss raise the score.
//!
//! What a device measures becomes the model's inputs this way ([`MediaSample`]):
//! `Ta = rtt/2 + codec delay + 2·jitter` (an adaptive jitter buffer holds about twice the
//! jitter), `Ppl = loss_pct`. Jitter therefore costs delay only; packets the jitter buffer
//! discards are already in WebRTC's loss figure only when the device reports them there.
//!
//! Reference points checked by the tests: default parameters give `R = 93.2`, `MOS = 4.41`
//! (G.107 §7.7, "R = 93.2" for all defaults); `R = 90, 80, 70, 60, 50` give MOS `4.34, 4.03,
//! 3.60, 3.10, 2.58` (G.107 Table B.1); `Idd = 0` up to `Ta = 100 ms` (G.107 §7.4).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

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
    /// Every band, worst first.
    pub const ALL: [MosRating; 5] = [
        MosRating::Bad,
        MosRating::Poor,
        MosRating::Fair,
        MosRating::Good,
        MosRating::Excellent,
    ];

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

/// Why figures cannot be scored.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QualityError {
    /// A figure is not finite or outside its range.
    #[error("{field} must be a finite number in {range}, got {value}")]
    OutOfRange {
        /// Which figure.
        field: &'static str,
        /// The allowed range, for the message.
        range: &'static str,
        /// What was given.
        value: f64,
    },
    /// A codec name the model has no parameters for.
    #[error("unknown codec {0:?} (expected opus, pcmu, pcma or g722)")]
    UnknownCodec(String),
    /// A media direction other than inbound or outbound.
    #[error("unknown direction {0:?} (expected inbound or outbound)")]
    UnknownDirection(String),
}

/// Largest round-trip time or jitter accepted, milliseconds.
pub const MAX_DELAY_MS: f64 = 60_000.0;
/// Largest burst ratio accepted.
pub const MAX_BURST_RATIO: f64 = 100.0;

/// Checks that `value` is finite and in `min..=max`.
pub fn check_range(
    field: &'static str,
    value: f64,
    min: f64,
    max: f64,
    range: &'static str,
) -> Result<(), QualityError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(QualityError::OutOfRange {
            field,
            range,
            value,
        })
    }
}

impl NetworkStats {
    /// Checks every figure's range, naming the first bad one.
    pub fn validate(&self) -> Result<(), QualityError> {
        check_range("rtt_ms", self.rtt_ms, 0.0, MAX_DELAY_MS, "0..=60000")?;
        check_range("jitter_ms", self.jitter_ms, 0.0, MAX_DELAY_MS, "0..=60000")?;
        check_range("loss_pct", self.loss_pct, 0.0, 100.0, "0..=100")
    }
}

/// A voice codec the model has parameters for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Opus (RFC 6716), the WebRTC default.
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 (64 kbit/s).
    G722,
}

/// Which way the measured audio flows, seen from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaDirection {
    /// Audio the device receives.
    Inbound,
    /// Audio the device sends (as the far end reports it).
    Outbound,
}

impl MediaDirection {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaDirection::Inbound => "inbound",
            MediaDirection::Outbound => "outbound",
        }
    }
}

impl FromStr for MediaDirection {
    type Err = QualityError;

    fn from_str(s: &str) -> Result<Self, QualityError> {
        match s {
            "inbound" => Ok(MediaDirection::Inbound),
            "outbound" => Ok(MediaDirection::Outbound),
            other => Err(QualityError::UnknownDirection(other.to_owned())),
        }
    }
}

/// E-model parameters of a codec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodecProfile {
    /// Equipment impairment factor without loss.
    pub ie: f64,
    /// Packet-loss robustness factor.
    pub bpl: f64,
    /// Packetisation and algorithmic delay added to the network's, milliseconds.
    pub delay_ms: f64,
}

impl Codec {
    /// Every codec.
    pub const ALL: [Codec; 4] = [Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722];

    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::G722 => "g722",
        }
    }

    /// The codec's E-model parameters, with or without packet-loss concealment.
    ///
    /// - G.711 (`pcmu`, `pcma`): `Ie = 0`; `Bpl = 25.1` with PLC (G.711 Appendix I), `4.3`
    ///   without (G.113 Appendix I, Table I.3).
    /// - G.722 and Opus have no narrowband `Ie`/`Bpl` in G.113 Appendix I (their values there
    ///   are for the wideband E-model, G.107.1, on another scale). On the narrowband scale they
    ///   are taken as G.711: `Ie = 0` (they are at least as good) and `Bpl = 25.1` with
    ///   concealment (G.722 Appendix III/IV PLC; Opus's decoder always conceals, so `plc` does
    ///   not change it). These two are assumptions, not measured values.
    ///
    /// Delay is one 20 ms frame (WebRTC's default `ptime`), plus Opus's 6.5 ms look-ahead.
    /// WebRTC stacks always conceal loss (NetEq), so devices are scored with `plc = true`.
    pub fn profile(self, plc: bool) -> CodecProfile {
        const WITH_PLC: f64 = 25.1;
        const WITHOUT_PLC: f64 = 4.3;
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => CodecProfile {
                ie: 0.0,
                bpl: if plc { WITH_PLC } else { WITHOUT_PLC },
                delay_ms: 20.0,
            },
            Codec::Opus => CodecProfile {
                ie: 0.0,
                bpl: WITH_PLC,
                delay_ms: 26.5,
            },
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = QualityError;

    fn from_str(s: &str) -> Result<Self, QualityError> {
        Codec::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| QualityError::UnknownCodec(s.to_owned()))
    }
}

/// `Ro`: basic signal-to-noise ratio at G.107's default parameters.
pub const RO: f64 = 94.77;
/// `Is`: simultaneous impairment at G.107's default parameters.
pub const IS: f64 = 1.41;
/// G.107 default weighted echo path loss (dB), for listener echo.
const WEPL: f64 = 110.0;
/// G.107 default talker echo loudness rating (dB).
const TELR: f64 = 65.0;
/// `Roe = −1.5(No − RLR)` at the defaults `No = −61.18`, `RLR = 2`.
const ROE: f64 = 94.77;

/// Delay impairment `Idd` (G.107 §7.4): zero up to `Ta = 100 ms`, then
/// `25{(1 + X⁶)^⅙ − 3(1 + (X/3)⁶)^⅙ + 2}` with `X = log₂(Ta/100)`.
pub fn idd(ta_ms: f64) -> f64 {
    if ta_ms <= 100.0 {
        return 0.0;
    }
    let x = (ta_ms / 100.0).log2();
    // Rounding can leave -1e-15 just above 100 ms.
    (25.0
        * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
            + 2.0))
        .max(0.0)
}

/// Listener-echo impairment `Idle` (G.107 §7.4) with `Tr = 2·Ta` and `WEPL = 110`.
pub fn idle(ta_ms: f64) -> f64 {
    let tr = 2.0 * ta_ms;
    let rle = 10.5 * (WEPL + 7.0) * (tr + 1.0).powf(-0.25);
    let d = RO - rle;
    d / 2.0 + (d * d / 4.0 + 169.0).sqrt()
}

/// Talker-echo impairment `Idte` (G.107 §7.4) with `T = Ta`, `TELR = 65`, `STMR = 15`,
/// clamped at zero (see the module documentation).
pub fn idte(ta_ms: f64) -> f64 {
    let t = ta_ms;
    let terv =
        TELR - 40.0 * ((1.0 + t / 10.0) / (1.0 + t / 150.0)).log10() + 6.0 * (-0.3 * t * t).exp();
    let re = 80.0 + 2.5 * (terv - 14.0);
    let d = ROE - re;
    let bracket = d / 2.0 + (d * d / 4.0 + 100.0).sqrt() - 1.0;
    (bracket * (1.0 - (-t).exp())).max(0.0)
}

/// Delay impairment `Id = Idte + Idle + Idd` for a one-way delay.
pub fn delay_impairment(ta_ms: f64) -> f64 {
    idte(ta_ms) + idle(ta_ms) + idd(ta_ms)
}

/// Effective equipment impairment `Ie,eff = Ie + (95 − Ie)·Ppl/(Ppl/BurstR + Bpl)`.
pub fn ie_eff(codec: CodecProfile, loss_pct: f64, burst_ratio: f64) -> f64 {
    if loss_pct <= 0.0 {
        return codec.ie;
    }
    codec.ie + (95.0 - codec.ie) * loss_pct / (loss_pct / burst_ratio + codec.bpl)
}

/// MOS from R (G.107 Annex B), never below 1.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6).max(1.0)
    }
}

/// What the E-model needs, in its own terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EModelInput {
    /// Mean one-way mouth-to-ear delay `Ta`, milliseconds.
    pub one_way_delay_ms: f64,
    /// Packet loss `Ppl`, percent.
    pub loss_pct: f64,
    /// `BurstR`: 1 for random loss.
    pub burst_ratio: f64,
    /// The codec's parameters.
    pub codec: CodecProfile,
    /// Advantage factor `A`.
    pub advantage: f64,
}

/// The transmission rating factor R for `input`.
pub fn r_factor(input: EModelInput) -> f64 {
    RO - IS
        - delay_impairment(input.one_way_delay_ms)
        - ie_eff(input.codec, input.loss_pct, input.burst_ratio)
        + input.advantage
}

/// What spoils a stretch of call the most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impairment {
    /// Network delay (half the round trip).
    Delay,
    /// The jitter buffer's delay (twice the jitter).
    Jitter,
    /// Packet loss.
    Loss,
}

impl Impairment {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Impairment::Delay => "delay",
            Impairment::Jitter => "jitter",
            Impairment::Loss => "loss",
        }
    }
}

/// Smallest R-factor loss worth naming as a dominant impairment.
pub const DOMINANT_THRESHOLD_R: f64 = 1.0;

/// How many R points delay, jitter and loss each cost, beyond the codec's own delay and `Ie`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImpairmentShares {
    /// `Id(rtt/2 + codec) − Id(codec)`.
    pub delay: f64,
    /// `Id(rtt/2 + codec + 2·jitter) − Id(rtt/2 + codec)`.
    pub jitter: f64,
    /// `Ie,eff − Ie`.
    pub loss: f64,
}

impl ImpairmentShares {
    /// The largest share, when it costs at least [`DOMINANT_THRESHOLD_R`].
    pub fn dominant(&self) -> Option<Impairment> {
        let mut best = (Impairment::Delay, self.delay);
        for candidate in [
            (Impairment::Jitter, self.jitter),
            (Impairment::Loss, self.loss),
        ] {
            if candidate.1 > best.1 {
                best = candidate;
            }
        }
        (best.1 >= DOMINANT_THRESHOLD_R).then_some(best.0)
    }

    /// The mean of several shares (zero for none).
    pub fn mean<'a>(shares: impl IntoIterator<Item = &'a ImpairmentShares>) -> ImpairmentShares {
        let (mut sum, mut n) = (ImpairmentShares::default(), 0.0);
        for s in shares {
            sum.delay += s.delay;
            sum.jitter += s.jitter;
            sum.loss += s.loss;
            n += 1.0;
        }
        if n > 0.0 {
            sum.delay /= n;
            sum.jitter /= n;
            sum.loss /= n;
        }
        sum
    }
}

/// One measurement of one media stream, as the model scores it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MediaSample {
    /// Round-trip time, jitter and loss.
    pub network: NetworkStats,
    /// The codec in use.
    pub codec: Codec,
    /// `BurstR` (1 = random loss).
    pub burst_ratio: f64,
}

/// The model's verdict on one sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Transmission rating factor.
    pub r: f64,
    /// Mean opinion score (1 to 4.5).
    pub mos: f64,
    /// What each impairment costs.
    pub shares: ImpairmentShares,
}

/// Scores one sample with the E-model (WebRTC concealment assumed).
pub fn assess(sample: MediaSample) -> Result<Assessment, QualityError> {
    sample.network.validate()?;
    check_range(
        "burst_ratio",
        sample.burst_ratio,
        1.0,
        MAX_BURST_RATIO,
        "1..=100",
    )?;
    let codec = sample.codec.profile(true);
    let base = codec.delay_ms;
    let network = base + sample.network.rtt_ms / 2.0;
    let total = network + 2.0 * sample.network.jitter_ms;
    let r = r_factor(EModelInput {
        one_way_delay_ms: total,
        loss_pct: sample.network.loss_pct,
        burst_ratio: sample.burst_ratio,
        codec,
        advantage: 0.0,
    });
    let shares = ImpairmentShares {
        delay: delay_impairment(network) - delay_impairment(base),
        jitter: delay_impairment(total) - delay_impairment(network),
        loss: ie_eff(codec, sample.network.loss_pct, sample.burst_ratio) - codec.ie,
    };
    Ok(Assessment {
        r,
        mos: mos_from_r(r),
        shares,
    })
}

/// Estimates MOS (1.0 to 4.5) from latency, jitter and loss with the E-model, for G.711 with
/// concealment and random loss.
pub fn estimate_mos(stats: NetworkStats) -> Result<f64, QualityError> {
    assess(MediaSample {
        network: stats,
        codec: Codec::Pcmu,
        burst_ratio: 1.0,
    })
    .map(|a| a.mos)
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
    use proptest::prelude::*;
    use serde_json::json;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

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

    /// G.107 §7.7: with every parameter at its default, R = 93.2 (and MOS 4.41 by Annex B).
    #[test]
    fn default_parameters_give_r_93_2() {
        let r = r_factor(EModelInput {
            one_way_delay_ms: 0.0,
            loss_pct: 0.0,
            burst_ratio: 1.0,
            codec: Codec::Pcmu.profile(true),
            advantage: 0.0,
        });
        assert!(close(r, 93.2, 0.05), "{r}");
        assert!(close(mos_from_r(r), 4.41, 0.005), "{}", mos_from_r(r));
        // The default Idle at T = 0 is G.107's 0.15.
        assert!(close(idle(0.0), 0.15, 0.005), "{}", idle(0.0));
    }

    /// G.107 Table B.1: R 90/80/70/60/50 are MOS 4.34/4.03/3.60/3.10/2.58 (the table's own
    /// rounding: the formula gives 4.024 at R 80), which are also the spec's band edges.
    #[test]
    fn mos_matches_g107_table_b1() {
        for (r, mos) in [
            (90.0, 4.34),
            (80.0, 4.03),
            (70.0, 3.60),
            (60.0, 3.10),
            (50.0, 2.58),
        ] {
            assert!(close(mos_from_r(r), mos, 0.01), "R {r}: {}", mos_from_r(r));
        }
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert_eq!(mos_from_r(3.0), 1.0, "the cubic's dip below 1 is cut off");
    }

    #[test]
    fn idd_starts_at_100_ms() {
        assert_eq!(idd(0.0), 0.0);
        assert_eq!(idd(100.0), 0.0);
        // X = 1 at 200 ms: 25·(2^⅙ − 3·(1 + 3⁻⁶)^⅙ + 2).
        assert!(close(idd(200.0), 3.04, 0.01), "{}", idd(200.0));
        assert!(close(idd(400.0), 24.08, 0.01), "{}", idd(400.0));
    }

    #[test]
    fn loss_follows_ie_eff() {
        let g711 = Codec::Pcmu.profile(true);
        // 95·Ppl/(Ppl + Bpl): 1 % random loss on G.711 with PLC costs 95/26.1.
        assert!(close(ie_eff(g711, 1.0, 1.0), 95.0 / 26.1, 1e-9));
        // Without concealment the same loss costs far more (Bpl 4.3).
        let bare = Codec::Pcmu.profile(false);
        assert!(close(ie_eff(bare, 1.0, 1.0), 95.0 / 5.3, 1e-9));
        // Burstier loss of the same amount costs more.
        assert!(ie_eff(g711, 5.0, 2.0) > ie_eff(g711, 5.0, 1.0));
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
    fn the_dominant_impairment_is_the_costliest() {
        let sample = |rtt_ms, jitter_ms, loss_pct| {
            assess(MediaSample {
                network: NetworkStats {
                    rtt_ms,
                    jitter_ms,
                    loss_pct,
                },
                codec: Codec::Opus,
                burst_ratio: 1.0,
            })
            .unwrap()
        };
        assert_eq!(sample(40.0, 2.0, 0.0).shares.dominant(), None);
        let lossy = sample(40.0, 2.0, 10.0);
        assert_eq!(lossy.shares.dominant(), Some(Impairment::Loss));
        // Ie,eff = 95·10/(10 + 25.1) = 27.1: R ≈ 66, MOS ≈ 3.4.
        assert_eq!(MosRating::from_mos(lossy.mos), Some(MosRating::Poor));
        assert_eq!(
            sample(700.0, 5.0, 0.0).shares.dominant(),
            Some(Impairment::Delay)
        );
        assert_eq!(
            sample(60.0, 150.0, 0.0).shares.dominant(),
            Some(Impairment::Jitter)
        );
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
            NetworkStats {
                rtt_ms: f64::NAN,
                jitter_ms: 1.0,
                loss_pct: 1.0,
            },
        ] {
            assert!(matches!(
                estimate_mos(stats),
                Err(QualityError::OutOfRange { .. })
            ));
        }
        let err = "g729".parse::<Codec>().unwrap_err();
        assert!(err.to_string().contains("g729"), "{err}");
        for codec in Codec::ALL {
            assert_eq!(codec.as_str().parse::<Codec>().unwrap(), codec);
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

    /// Floating-point rounding allowance for "never raises".
    const EPS: f64 = 1e-9;

    fn codec() -> impl Strategy<Value = Codec> {
        prop::sample::select(Codec::ALL.to_vec())
    }

    fn mos(rtt_ms: f64, jitter_ms: f64, loss_pct: f64, burst_ratio: f64, codec: Codec) -> f64 {
        assess(MediaSample {
            network: NetworkStats {
                rtt_ms,
                jitter_ms,
                loss_pct,
            },
            codec,
            burst_ratio,
        })
        .unwrap()
        .mos
    }

    proptest! {
        #[test]
        fn more_loss_never_raises_mos(
            rtt in 0.0..2_000.0f64, jitter in 0.0..500.0f64,
            a in 0.0..=100.0f64, b in 0.0..=100.0f64,
            burst in 1.0..20.0f64, codec in codec(),
        ) {
            let (less, more) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(mos(rtt, jitter, more, burst, codec) <= mos(rtt, jitter, less, burst, codec) + EPS);
        }

        #[test]
        fn more_delay_or_jitter_never_raises_mos(
            a in 0.0..60_000.0f64, b in 0.0..60_000.0f64,
            j in 0.0..1_000.0f64, loss in 0.0..=100.0f64, codec in codec(),
        ) {
            let (less, more) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(mos(more, j, loss, 1.0, codec) <= mos(less, j, loss, 1.0, codec) + EPS);
            prop_assert!(mos(j, more, loss, 1.0, codec) <= mos(j, less, loss, 1.0, codec) + EPS);
        }

        #[test]
        fn burstier_loss_never_raises_mos(
            a in 1.0..100.0f64, b in 1.0..100.0f64, loss in 0.0..=100.0f64, codec in codec(),
        ) {
            let (less, more) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(mos(50.0, 5.0, loss, more, codec) <= mos(50.0, 5.0, loss, less, codec) + EPS);
        }

        #[test]
        fn delay_impairment_grows_with_delay(a in 0.0..60_000.0f64, b in 0.0..60_000.0f64) {
            let (less, more) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(delay_impairment(more) + EPS >= delay_impairment(less));
            prop_assert!(idte(less) >= 0.0);
        }

        #[test]
        fn mos_never_falls_as_r_rises(a in -50.0..150.0f64, b in -50.0..150.0f64) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(mos_from_r(hi) + EPS >= mos_from_r(lo));
            prop_assert!((1.0..=4.5).contains(&mos_from_r(lo)));
        }
    }
}
