//! The machine as JSON, Graphviz and Markdown, all generated from [`TRANSITIONS`] and the SDK
//! maps (backs `ringmaster states` and `docs/states.md`).

use crate::sdk::{self, EndCause, SdkMapping, TerminationCause};
use crate::state::{CallState, Direction, Platform};
use crate::table::{row_for, Source, TransitionRow, TRANSITIONS};
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// One line of an SDK map that moves a call legally: SDK state `sdk_state` seen in canonical
/// state `from` on a call of `direction` (ending for `cause`, for the ending states) moves it
/// to `to` by `trigger`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdkRule {
    /// The SDK's spelling of its state.
    pub sdk_state: &'static str,
    /// Call direction.
    pub direction: Direction,
    /// Canonical state before.
    pub from: CallState,
    /// Kind of termination cause, for states that end the call.
    pub cause: Option<EndCause>,
    /// Canonical state after.
    pub to: CallState,
    /// Trigger name (snake_case kind).
    pub trigger: &'static str,
}

/// One SDK's state names and legal rules.
#[derive(Clone, Debug)]
pub struct SdkMapSummary {
    /// Platform key: `ios`, `android`, `web`.
    pub platform: Platform,
    /// Every state name of the SDK.
    pub states: Vec<&'static str>,
    /// The subset the app tracks, where it differs (web: 4 of 12).
    pub app_states: Option<Vec<&'static str>>,
    /// Every (state, direction, from, cause) that moves a call legally, in a stable order.
    pub rules: Vec<SdkRule>,
}

type MapFn = fn(&str, Direction, CallState, Option<&TerminationCause>) -> SdkMapping;

fn rules_for(states: &[&'static str], ending: &[&'static str], map: MapFn) -> Vec<SdkRule> {
    let mut rules = Vec::new();
    for &name in states {
        let causes: Vec<Option<EndCause>> = if ending.contains(&name) {
            EndCause::ALL.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for direction in Direction::ALL {
            for from in CallState::ALL.into_iter().filter(|s| !s.is_terminal()) {
                for &cause in &causes {
                    let reason = cause.and_then(EndCause::example);
                    let SdkMapping::Move { to, trigger } =
                        map(name, direction, from, reason.as_ref())
                    else {
                        continue;
                    };
                    let legal = row_for(from, trigger.kind())
                        .is_some_and(|row| row.to == to && row.allows(direction));
                    if legal {
                        rules.push(SdkRule {
                            sdk_state: name,
                            direction,
                            from,
                            cause,
                            to,
                            trigger: trigger.kind().as_str(),
                        });
                    }
                }
            }
        }
    }
    rules
}

/// The three SDK maps, summarised by enumerating every input.
pub fn sdk_maps() -> Vec<SdkMapSummary> {
    let ios: Vec<_> = sdk::IosState::ALL.iter().map(|s| s.as_str()).collect();
    let android: Vec<_> = sdk::AndroidState::ALL.iter().map(|s| s.as_str()).collect();
    let web: Vec<_> = sdk::WebState::ALL.iter().map(|s| s.as_str()).collect();
    // The names come from the SDK enums themselves, so parsing them back cannot fail; a
    // failure would only drop the rule, never panic.
    let ios_map: MapFn = |n, d, p, c| {
        n.parse()
            .map_or(SdkMapping::NoChange, |s| sdk::ios::map(s, d, p, c))
    };
    let android_map: MapFn = |n, d, p, c| {
        n.parse()
            .map_or(SdkMapping::NoChange, |s| sdk::android::map(s, d, p, c))
    };
    let web_map: MapFn = |n, d, p, c| {
        n.parse()
            .map_or(SdkMapping::NoChange, |s| sdk::web::map(s, d, p, c))
    };
    vec![
        SdkMapSummary {
            platform: Platform::Ios,
            rules: rules_for(&ios, &["DONE"], ios_map),
            states: ios,
            app_states: None,
        },
        SdkMapSummary {
            platform: Platform::Android,
            rules: rules_for(&android, &["DONE"], android_map),
            states: android,
            app_states: None,
        },
        SdkMapSummary {
            platform: Platform::Web,
            rules: rules_for(&web, &["hangup", "destroy", "purge"], web_map),
            states: web,
            app_states: Some(
                sdk::WebState::APP_STATES
                    .iter()
                    .map(|s| s.as_str())
                    .collect(),
            ),
        },
    ]
}

fn platforms_json(row: &TransitionRow) -> Value {
    Value::from(row.platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>())
}

/// `{"states":[...],"transitions":[{"from","to","trigger","platforms","source",...}],"sdk_maps":{...}}`.
pub fn json() -> Value {
    let transitions: Vec<Value> = TRANSITIONS
        .iter()
        .map(|row| {
            let mut obj = Map::new();
            obj.insert("from".into(), row.from.as_str().into());
            obj.insert("to".into(), row.to.as_str().into());
            obj.insert("trigger".into(), row.trigger.as_str().into());
            obj.insert("platforms".into(), platforms_json(row));
            obj.insert("source".into(), row.source.as_str().into());
            if let Some(why) = row.why() {
                obj.insert("why".into(), why.into());
            }
            if let Some(direction) = row.direction {
                obj.insert("direction".into(), direction.as_str().into());
            }
            obj.insert("side_effects".into(), row.side_effects.into());
            Value::Object(obj)
        })
        .collect();
    let mut maps = Map::new();
    for summary in sdk_maps() {
        let rules: Vec<Value> = summary
            .rules
            .iter()
            .map(|r| {
                let mut obj = Map::new();
                obj.insert("sdk_state".into(), r.sdk_state.into());
                obj.insert("direction".into(), r.direction.as_str().into());
                obj.insert("from".into(), r.from.as_str().into());
                if let Some(cause) = r.cause {
                    obj.insert("cause".into(), cause.as_str().into());
                }
                obj.insert("to".into(), r.to.as_str().into());
                obj.insert("trigger".into(), r.trigger.into());
                Value::Object(obj)
            })
            .collect();
        let mut obj = Map::new();
        obj.insert("states".into(), summary.states.clone().into());
        if let Some(app) = &summary.app_states {
            obj.insert("app_states".into(), app.clone().into());
        }
        obj.insert("rules".into(), rules.into());
        maps.insert(summary.platform.as_str().into(), Value::Object(obj));
    }
    json!({
        "states": CallState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "transitions": transitions,
        "sdk_maps": maps,
    })
}

/// A Graphviz digraph: terminal states double-circled, implied rows dashed, the spec's
/// "(any) → FAILED" rows grey.
pub fn dot() -> String {
    let mut out = String::new();
    out.push_str("digraph call_states {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for state in CallState::ALL {
        let shape = if state.is_terminal() {
            ", shape=doublecircle"
        } else {
            ""
        };
        let fill = if state.must_persist() {
            ", style=filled, fillcolor=\"#fff2cc\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} [label=\"{}\"{shape}{fill}];",
            state.as_str(),
            state.as_str()
        );
    }
    for row in TRANSITIONS {
        let mut attrs = vec![format!("label=\"{}\"", row.trigger.as_str())];
        if matches!(row.source, Source::Implied { .. }) {
            attrs.push("style=dashed".into());
        }
        if row.trigger == crate::trigger::TriggerKind::InternalError {
            attrs.push("color=grey".into());
            attrs.push("fontcolor=grey".into());
        }
        let _ = writeln!(
            out,
            "  {} -> {} [{}];",
            row.from.as_str(),
            row.to.as_str(),
            attrs.join(", ")
        );
    }
    out.push_str("}\n");
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The whole machine as Markdown: this is `docs/states.md`.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Canonical call states\n\n\
         <!-- Generated by `ringmaster states --markdown`; do not edit by hand.\n     \
         Regenerate: cargo run -q -- states --markdown > docs/states.md -->\n\n\
         Generated from the transition table in `crates/ringmaster-core/src/table.rs`, the single \
         source of truth shared by the server and every device. Spec: \
         `shared/spec/call-state-complete.md` §1–2.\n\n",
    );
    out.push_str("## States\n\n| State | Terminal | Persisted on device |\n|---|---|---|\n");
    for state in CallState::ALL {
        let yes = |b: bool| if b { "yes" } else { "" };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            state.as_str(),
            yes(state.is_terminal()),
            yes(state.must_persist())
        );
    }
    out.push_str(NOTES);
    out.push_str(
        "\n## Transitions\n\n\
         Rows marked *implied* are not in spec §1.3 but follow from it; each says why. \
         A trigger not listed for a state is refused: `Illegal` in a live state, \
         `LateEventOnTerminal` in ENDED, FAILED or MISSED.\n\n\
         | From | To | Trigger | Platforms | Side effects | Source |\n|---|---|---|---|---|---|\n",
    );
    for row in TRANSITIONS {
        let platforms: Vec<_> = row.platforms.iter().map(|p| p.as_str()).collect();
        let mut source = match row.source {
            Source::Spec => "spec".to_owned(),
            Source::Implied { why } => format!("implied: {why}"),
        };
        if let Some(direction) = row.direction {
            let _ = write!(source, " ({} calls only)", direction.as_str());
        }
        let _ = writeln!(
            out,
            "| `{}` | `{}` | `{}` | {} | {} | {} |",
            row.from.as_str(),
            row.to.as_str(),
            row.trigger.as_str(),
            platforms.join(", "),
            cell(row.side_effects),
            cell(&source)
        );
    }
    out.push_str(SDK_INTRO);
    for summary in sdk_maps() {
        let title = match summary.platform {
            Platform::Ios => "iOS SDK",
            Platform::Android => "Android SDK",
            Platform::Web => "Web (Telnyx JS SDK)",
        };
        let _ = write!(out, "\n### {title}\n\nStates: ");
        let names: Vec<String> = summary.states.iter().map(|s| format!("`{s}`")).collect();
        out.push_str(&names.join(", "));
        out.push_str(".\n");
        if let Some(app) = &summary.app_states {
            let names: Vec<String> = app.iter().map(|s| format!("`{s}`")).collect();
            let _ = writeln!(out, "The web app itself tracks only {}.", names.join(", "));
        }
        out.push_str(
            "\n| SDK state | Direction | From | Cause | To | Trigger |\n|---|---|---|---|---|---|\n",
        );
        for group in grouped(&summary.rules) {
            let froms: Vec<String> = group.froms.iter().map(|s| format!("`{s}`")).collect();
            let causes = if group.causes.len() == EndCause::ALL.len() {
                "any".to_owned()
            } else {
                let names: Vec<&str> = group.causes.iter().map(|c| c.as_str()).collect();
                names.join(", ")
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | `{}` | `{}` |",
                group.sdk_state,
                group.direction.as_str(),
                froms.join(", "),
                causes,
                group.to.as_str(),
                group.trigger
            );
        }
    }
    out
}

/// One field of a real-time event payload, as the TypeScript module declares it.
struct PayloadField {
    name: &'static str,
    ts_type: &'static str,
    optional: bool,
}

const fn field(name: &'static str, ts_type: &'static str) -> PayloadField {
    PayloadField {
        name,
        ts_type,
        optional: false,
    }
}

/// A field older servers may leave out; clients must tolerate its absence.
const fn optional(name: &'static str, ts_type: &'static str) -> PayloadField {
    PayloadField {
        name,
        ts_type,
        optional: true,
    }
}

/// The events on `private-user.{user_id}` (design: dismissal), name, interface and fields.
/// `version` grows with every change of the call, so a client drops anything older than what
/// it has seen.
const EVENTS: &[(&str, &str, &[PayloadField])] = &[
    (
        "incoming_call",
        "IncomingCallEvent",
        &[
            field("call_session_id", "string"),
            field("from", "string"),
            field("to", "string"),
            field("version", "number"),
        ],
    ),
    (
        "call_ended",
        "CallEndedEvent",
        &[
            field("call_session_id", "string"),
            field("reason", "DismissReason | string"),
            field("device_id", "string | null"),
            field("version", "number"),
        ],
    ),
    (
        "call_state_changed",
        "CallStateChangedEvent",
        &[
            field("call_session_id", "string"),
            field("device_id", "string | null"),
            optional("platform", "Platform"),
            field("state", "CallState | string"),
            optional("previous_state", "CallState | null"),
            field("version", "number"),
        ],
    ),
];

fn ts_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| format!("'{s}'")).collect();
    quoted.join(", ")
}

/// The machine as a TypeScript module: states, every transition row, and the real-time event
/// payload types. The web console imports it (`web/src/generated/machine.ts`) and checks every
/// state it receives against it; a test fails when the committed copy differs from this.
pub fn typescript() -> String {
    let mut out = String::new();
    out.push_str(
        "// Generated by `ringmaster states --typescript` from crates/ringmaster-core (the \
         transition table);\n// do not edit. Regenerate: cargo run -q -- states --typescript > \
         web/src/generated/machine.ts\n\n",
    );
    let _ = writeln!(
        out,
        "/** The canonical call states, in the spec's order. */\nexport const STATES = [{}] as const;\n/** One canonical call state. */\nexport type CallState = (typeof STATES)[number];\n",
        ts_list(CallState::ALL.iter().map(|s| s.as_str()))
    );
    let _ = writeln!(
        out,
        "/** States that absorb every further event. */\nexport const TERMINAL_STATES: readonly CallState[] = [{}];\n",
        ts_list(
            CallState::ALL
                .iter()
                .filter(|s| s.is_terminal())
                .map(|s| s.as_str())
        )
    );
    let _ = writeln!(
        out,
        "/** A client platform. */\nexport type Platform = {};\n/** Which side placed the call. */\nexport type Direction = {};\n",
        Platform::ALL
            .iter()
            .map(|p| format!("'{}'", p.as_str()))
            .collect::<Vec<_>>()
            .join(" | "),
        Direction::ALL
            .iter()
            .map(|d| format!("'{}'", d.as_str()))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    out.push_str(
        "/** Why a ringing device must stop ringing. */\nexport type DismissReason = \
         'answered_elsewhere' | 'declined_elsewhere' | 'caller_cancelled' | 'timeout' | 'busy' \
         | 'replaced';\n\n",
    );
    out.push_str(
        "/** One legal transition of the table. */\nexport interface Transition {\n  \
         readonly from: CallState;\n  readonly to: CallState;\n  readonly trigger: string;\n  \
         readonly platforms: readonly Platform[];\n  readonly direction: Direction | null;\n}\n\n",
    );
    out.push_str("/** Every legal transition (`crates/ringmaster-core/src/table.rs`). */\nexport const TRANSITIONS: readonly Transition[] = [\n");
    for row in TRANSITIONS {
        let direction = row
            .direction
            .map_or("null".to_owned(), |d| format!("'{}'", d.as_str()));
        let _ = writeln!(
            out,
            "  {{ from: '{}', to: '{}', trigger: '{}', platforms: [{}], direction: {direction} }},",
            row.from.as_str(),
            row.to.as_str(),
            row.trigger.as_str(),
            ts_list(row.platforms.iter().map(|p| p.as_str())),
        );
    }
    out.push_str("];\n\n");
    out.push_str(
        "/** Whether `value` is one of the canonical state names. */\n\
         export function isCallState(value: unknown): value is CallState {\n  \
         return typeof value === 'string' && (STATES as readonly string[]).includes(value);\n}\n\n\
         /** Whether the table has a row from `from` to `to` (any trigger, any direction). */\n\
         export function isLegal(from: CallState, to: CallState): boolean {\n  \
         return TRANSITIONS.some((row) => row.from === from && row.to === to);\n}\n\n\
         /** Whether `state` is terminal. */\nexport function isTerminal(state: CallState): boolean {\n  \
         return TERMINAL_STATES.includes(state);\n}\n",
    );
    for (name, interface, fields) in EVENTS {
        let _ = writeln!(
            out,
            "\n/** Payload of the `{name}` event. */\nexport interface {interface} {{"
        );
        for f in *fields {
            let q = if f.optional { "?" } else { "" };
            let _ = writeln!(out, "  {}{q}: {};", f.name, f.ts_type);
        }
        out.push_str("}\n");
    }
    let _ = writeln!(
        out,
        "\n/** The event names on `private-user.{{user_id}}`. */\nexport const EVENT_NAMES = [{}] as const;",
        ts_list(EVENTS.iter().map(|(name, _, _)| *name))
    );
    out
}

/// Rules sharing SDK state, direction, target and trigger, folded for the Markdown table.
struct RuleGroup {
    sdk_state: &'static str,
    direction: Direction,
    froms: Vec<CallState>,
    causes: Vec<EndCause>,
    to: CallState,
    trigger: &'static str,
}

/// Folds rules first by cause (same from), then by from (same cause set), keeping the order in
/// which each group first appears.
fn grouped(rules: &[SdkRule]) -> Vec<RuleGroup> {
    let mut by_from: Vec<RuleGroup> = Vec::new();
    for r in rules {
        let same = by_from.iter_mut().find(|g| {
            g.sdk_state == r.sdk_state
                && g.direction == r.direction
                && g.froms == [r.from]
                && g.to == r.to
                && g.trigger == r.trigger
        });
        match same {
            Some(g) => g.causes.extend(r.cause),
            None => by_from.push(RuleGroup {
                sdk_state: r.sdk_state,
                direction: r.direction,
                froms: vec![r.from],
                causes: r.cause.into_iter().collect(),
                to: r.to,
                trigger: r.trigger,
            }),
        }
    }
    let mut out: Vec<RuleGroup> = Vec::new();
    for g in by_from {
        let same = out.iter_mut().find(|o| {
            o.sdk_state == g.sdk_state
                && o.direction == g.direction
                && o.causes == g.causes
                && o.to == g.to
                && o.trigger == g.trigger
        });
        match same {
            Some(o) => o.froms.extend(g.froms),
            None => out.push(g),
        }
    }
    out
}

const NOTES: &str = "
Notes on the spec:

- DISCONNECTING is listed under \"Terminal\" in spec §1.1 but has an exit (cleanup done → ENDED),
  and DROPPED moves on to ENDED after cleanup (spec §1.3), so neither absorbs events. Only ENDED,
  FAILED and MISSED are terminal.
- The spec's diagram draws FAILED → ENDED, but §1.3 has no such row and FAILED is an outcome in
  its own right, so FAILED is terminal; cleanup after a failure is a side effect, not a state.
- Persisted states follow spec §3.4/§9.5 (RINGING_INBOUND, so a crash while ringing becomes a
  missed call), §3.1–3.3 (any connected state, so a crash leaves a detectable orphan), and the
  \"clear persistence\" side effect on reaching ENDED (DISCONNECTING and DROPPED keep it).
  CONNECTING, REQUESTING and RINGING_OUTBOUND are not persisted (spec T3; outbound calls persist
  on ACTIVE).
";

const SDK_INTRO: &str = "
## SDK state maps

Each SDK map is a total function of (SDK state, call direction, previous canonical state,
termination cause) giving either \"no change\" or a canonical state plus the trigger to apply.
The tables below list every input that moves a call legally. States not listed for some
previous state mean \"no change\" there (e.g. `NEW`, `trying`, `answering`, anything after the
call is terminal, or `ACTIVE` while the remote holds, which the SDKs cannot see); any other
combination maps to its naive target and is refused by the table as illegal.

Termination causes are classified from the SDK's `cause`, then `causeCode`, then `sipCode`:
`caller_cancelled` (ORIGINATOR_CANCEL/487), `no_answer` (NO_ANSWER, NO_USER_RESPONSE,
RECOVERY_ON_TIMER_EXPIRE, SIP 408/480), `rejected` (USER_BUSY, CALL_REJECTED, SIP 403/486/600/603),
`normal_clearing` (16), `answered_elsewhere` (LOSE_RACE, PICKED_OFF), `error` (anything else) and
`unknown` (no reason given). An inbound call that ends while ringing with no reason counts as
missed, so a missed call is never lost (spec §3.4).
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lists_every_state_and_row() {
        let v = json();
        assert_eq!(v["states"].as_array().unwrap().len(), 15);
        assert_eq!(
            v["transitions"].as_array().unwrap().len(),
            TRANSITIONS.len()
        );
        let first = &v["transitions"][0];
        assert_eq!(first["from"], "IDLE");
        assert_eq!(first["to"], "REQUESTING");
        assert_eq!(first["trigger"], "user_dials_web");
        assert_eq!(first["platforms"], json!(["web"]));
        assert_eq!(first["source"], "spec");
        for key in ["ios", "android", "web"] {
            assert!(!v["sdk_maps"][key]["rules"].as_array().unwrap().is_empty());
        }
        assert_eq!(v["sdk_maps"]["web"]["states"].as_array().unwrap().len(), 12);
        assert_eq!(
            v["sdk_maps"]["web"]["app_states"].as_array().unwrap().len(),
            4
        );
    }

    #[test]
    fn typescript_declares_every_state_row_and_event() {
        let ts = typescript();
        assert!(ts.contains("'RINGING_INBOUND'"));
        assert_eq!(ts.matches("{ from: '").count(), TRANSITIONS.len());
        assert!(ts.contains("{ from: 'REMOTE_HOLD', to: 'ACTIVE', trigger: 'remote_resume'"));
        for name in [
            "IncomingCallEvent",
            "CallEndedEvent",
            "CallStateChangedEvent",
        ] {
            assert!(
                ts.contains(&format!("export interface {name} {{")),
                "{name}"
            );
        }
        assert!(ts.contains("previous_state?: CallState | null;"));
    }

    #[test]
    fn dot_has_one_edge_per_row() {
        let d = dot();
        assert!(d.starts_with("digraph call_states {"));
        assert_eq!(d.matches(" -> ").count(), TRANSITIONS.len());
        assert!(d.contains("REMOTE_HOLD -> ACTIVE [label=\"remote_resume\", style=dashed]"));
    }

    #[test]
    fn sdk_rules_split_ringing_by_direction() {
        let ios = &sdk_maps()[0];
        assert!(ios.rules.contains(&SdkRule {
            sdk_state: "RINGING",
            direction: Direction::Inbound,
            from: CallState::Idle,
            cause: None,
            to: CallState::RingingInbound,
            trigger: "incoming_call",
        }));
        assert!(ios.rules.contains(&SdkRule {
            sdk_state: "DONE",
            direction: Direction::Inbound,
            from: CallState::RingingInbound,
            cause: Some(EndCause::CallerCancelled),
            to: CallState::Missed,
            trigger: "caller_hangup",
        }));
    }
}
