//! `ringmaster call`: a one-minute demonstration against a sandbox server. It creates a demo
//! user with three devices (iOS, Android, web), scripts one device to answer, places a PSTN
//! call to the user through the emulator, follows every device's view of the call through the
//! status API, hangs up, and prints the call's legs and timeline.

use anyhow::{bail, Context as _};
use clap::Args;
use rand::Rng as _;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Options of `ringmaster call`.
#[derive(Args, Debug, Clone)]
pub struct CallArgs {
    /// The ringmaster server (must run in sandbox mode).
    #[arg(
        long,
        env = "RINGMASTER_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The server's admin token (printed by `ringmaster serve` in sandbox mode).
    #[arg(long, env = "RINGMASTER_ADMIN_TOKEN")]
    pub admin_token: String,
    /// Which device answers: ios, android or web.
    #[arg(long, default_value = "web")]
    pub answer_on: String,
    /// How long the answering device rings before it picks up.
    #[arg(long, default_value_t = 2000)]
    pub answer_after_ms: u64,
    /// How long the call stays up before the caller hangs up.
    #[arg(long, default_value_t = 2)]
    pub talk_secs: u64,
    /// The calling (PSTN) number.
    #[arg(long, default_value = "+15557654321")]
    pub from: String,
}

const PLATFORMS: [&str; 3] = ["ios", "android", "web"];
const POLL: Duration = Duration::from_millis(200);
const GIVE_UP: Duration = Duration::from_secs(90);

/// Runs the demonstration.
pub fn run(args: CallArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(demo(args))
}

struct Api {
    http: Client,
    server: String,
}

impl Api {
    async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}: is the server running?"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            if status == StatusCode::UNAUTHORIZED {
                bail!("{method} {url}: 401 (wrong --admin-token?): {text}");
            }
            bail!("{method} {url}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }
}

struct DemoDevice {
    platform: &'static str,
    id: String,
    token: String,
    last: String,
}

fn secs(since: Instant) -> String {
    format!("+{:>5.2}s", since.elapsed().as_secs_f64())
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

async fn demo(args: CallArgs) -> anyhow::Result<()> {
    if !PLATFORMS.contains(&args.answer_on.as_str()) {
        bail!("--answer-on must be one of ios, android, web");
    }
    let api = Api {
        http: Client::builder().timeout(Duration::from_secs(10)).build()?,
        server: args.server.clone(),
    };
    let admin = Some(args.admin_token.as_str());
    let sandbox = api
        .send(Method::GET, &api.url("/api/admin/sandbox"), admin, None)
        .await
        .context(
            "this helper drives the built-in emulator; start the server without a Telnyx key",
        )?;
    let emulator = sandbox
        .get("emulator_url")
        .and_then(Value::as_str)
        .context("sandbox answer without emulator_url")?
        .to_owned();

    let suffix: u32 = rand::thread_rng().gen_range(0..10_000_000);
    let number = format!("+1555{suffix:07}");
    let user = api
        .send(
            Method::POST,
            &api.url("/api/admin/users"),
            admin,
            Some(json!({ "name": "Demo user", "numbers": [number] })),
        )
        .await?;
    let user_id = text(&user, "id");
    println!("demo user {user_id} owns {number}");

    let mut devices = Vec::new();
    for platform in PLATFORMS {
        let sip_uri = format!("sip:demo-{platform}-{suffix:07}@sandbox.ringmaster.local");
        let d = api
            .send(
                Method::POST,
                &api.url(&format!("/api/admin/users/{user_id}/devices")),
                admin,
                Some(json!({ "platform": platform, "sip_uri": sip_uri })),
            )
            .await?;
        let script = if platform == args.answer_on {
            json!({ "answer_after_ms": args.answer_after_ms })
        } else {
            json!("ring")
        };
        api.send(
            Method::POST,
            &format!("{emulator}/endpoints"),
            None,
            Some(json!({ "to": sip_uri, "script": script })),
        )
        .await?;
        println!("  device {:<8} {}  ({sip_uri})", platform, text(&d, "id"));
        devices.push(DemoDevice {
            platform,
            id: text(&d, "id"),
            token: text(&d, "token"),
            last: String::new(),
        });
    }
    println!(
        "the {} device will answer after {} ms; the others just ring",
        args.answer_on, args.answer_after_ms
    );

    let call = api
        .send(
            Method::POST,
            &format!("{emulator}/calls"),
            None,
            Some(json!({ "from": args.from, "to": number })),
        )
        .await?;
    let call_id = text(&call, "call_session_id");
    let caller = text(&call, "call_control_id");
    let started = Instant::now();
    println!(
        "\n{} {} calls {number} (call {call_id})",
        secs(started),
        args.from
    );

    // Follow every device's view until the call is up (or over), then hang up and follow it
    // to the end.
    let mut hung_up = false;
    let mut bridged_at: Option<Instant> = None;
    loop {
        if started.elapsed() > GIVE_UP {
            bail!("the call did not finish within {GIVE_UP:?}");
        }
        let mut call_status = String::new();
        for d in devices.iter_mut() {
            let url = api.url(&format!("/api/voip/call-status/{call_id}"));
            let view = match api.send(Method::GET, &url, Some(&d.token), None).await {
                Ok(v) => v,
                // The session is created by the first webhook; until then the call is unknown.
                Err(_) if started.elapsed() < Duration::from_secs(5) => continue,
                Err(e) => return Err(e),
            };
            call_status = text(&view, "call_status");
            let status = text(&view, "status");
            let line = match text(&view, "reason") {
                reason if reason == "-" || reason == status => status,
                reason => format!("{status} ({reason})"),
            };
            if line != d.last {
                println!("{} {:<8} {line}", secs(started), d.platform);
                d.last = line;
            }
        }
        match call_status.as_str() {
            "bridged" if bridged_at.is_none() => {
                println!(
                    "{} call bridged; talking for {} s",
                    secs(started),
                    args.talk_secs
                );
                bridged_at = Some(Instant::now());
            }
            "" | "ringing" | "answered" | "bridged" => {}
            done => {
                println!("{} call over: {done}", secs(started));
                break;
            }
        }
        if let Some(at) = bridged_at {
            if !hung_up && at.elapsed() >= Duration::from_secs(args.talk_secs) {
                println!("{} the caller hangs up", secs(started));
                api.send(
                    Method::POST,
                    &format!("{emulator}/calls/{caller}/hangup"),
                    None,
                    Some(json!({})),
                )
                .await?;
                hung_up = true;
            }
        }
        tokio::time::sleep(POLL).await;
    }

    let detail = api
        .send(
            Method::GET,
            &api.url(&format!("/api/voip/calls/{call_id}")),
            Some(&devices[0].token),
            None,
        )
        .await?;
    print_detail(&detail, &devices);
    Ok(())
}

fn print_detail(detail: &Value, devices: &[DemoDevice]) {
    let name = |id: &str| {
        devices
            .iter()
            .find(|d| d.id == id)
            .map_or_else(|| id.to_owned(), |d| d.platform.to_owned())
    };
    let call = &detail["call"];
    let t0 = call["started_at"].as_u64().unwrap_or(0);
    let rel = |v: &Value| {
        v.as_u64().map_or_else(
            || "-".to_owned(),
            |ms| format!("+{:.2}s", ms.saturating_sub(t0) as f64 / 1000.0),
        )
    };
    println!(
        "\nhistory: status {}, answered on {}, hangup cause {}",
        text(call, "status"),
        call["answered_device"]
            .as_str()
            .map_or_else(|| "-".to_owned(), name),
        text(call, "hangup_cause"),
    );
    println!("legs:");
    for leg in detail["legs"].as_array().into_iter().flatten() {
        let who = leg["device_id"]
            .as_str()
            .map_or_else(|| "caller".to_owned(), name);
        println!(
            "  {:<8} {:<9} answered {:<8} ended {:<8} {}",
            who,
            text(leg, "status"),
            rel(&leg["answered_at"]),
            rel(&leg["ended_at"]),
            text(leg, "hangup_cause"),
        );
    }
    println!("timeline:");
    for e in detail["timeline"].as_array().into_iter().flatten() {
        let who = e["device_id"].as_str().map(name).unwrap_or_default();
        let detail = match &e["detail"] {
            Value::Object(m) if m.contains_key("detail") => text(&e["detail"], "detail"),
            _ => String::new(),
        };
        println!(
            "  {:>8} {:<24} {:<8} {detail}",
            rel(&e["at"]),
            text(e, "kind"),
            who
        );
    }
    let winner = call["answered_device"].as_str();
    let dismissed: Vec<_> = devices
        .iter()
        .filter(|d| Some(d.id.as_str()) != winner)
        .map(|d| format!("{} ({})", d.platform, d.last))
        .collect();
    if let Some(w) = winner {
        println!(
            "\none device answered ({}); the others were dismissed: {}",
            name(w),
            dismissed.join(", ")
        );
    }
}
