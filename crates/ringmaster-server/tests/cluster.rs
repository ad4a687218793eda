//! Several `ringmaster serve` processes (the real binary) on one PostgreSQL schema and one NATS
//! server. The Telnyx emulator runs in this process; its webhooks reach the nodes through a
//! small load balancer whose routing each test sets (and which fails over from a dead node).

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::pusher::{Ended, PusherClient};
use common::{drop_postgres_schema, eventually, fresh_number, postgres_schema, CALLER, PATIENCE};
use ringmaster_core::{CallControlId, CallSessionId};
use ringmaster_telnyx::emulator::{CallSnapshot, CommandOutcome, CommandRecord, LegState};
use ringmaster_telnyx::{Emulator, EmulatorConfig, EmulatorHandle, WebhookSigner};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const ADMIN: &str = "cluster-admin-token-0123456789abcdef";
const NATS: &str = "nats://127.0.0.1:4222";

/// Which node the load balancer hands a webhook to.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// Always this node (the next live one if it is down).
    To(usize),
    /// Node by node in turn.
    RoundRobin,
    /// A call's first device `call.answered` to node 0, the second to node 1, and everything
    /// else to node 0.
    SplitAnswers,
}

#[derive(Default)]
struct Balancer {
    nodes: Vec<String>,
    route: Option<Route>,
    turn: usize,
    answers: HashMap<String, usize>,
    /// Webhooks each node acknowledged.
    delivered: Vec<usize>,
}

#[derive(Clone)]
struct Proxy {
    balancer: Arc<Mutex<Balancer>>,
    http: reqwest::Client,
}

impl Proxy {
    fn first_choice(&self, body: &Value) -> (usize, usize) {
        let mut b = self.balancer.lock().unwrap();
        let n = b.nodes.len();
        let pick = match b.route.unwrap_or(Route::To(0)) {
            Route::To(i) => i,
            Route::RoundRobin => {
                b.turn += 1;
                b.turn
            }
            Route::SplitAnswers => {
                let data = &body["data"];
                // Devices are dialled at SIP URIs; the caller's own answer does not count.
                let device = data["payload"]["to"]
                    .as_str()
                    .is_some_and(|to| to.starts_with("sip:"));
                if data["event_type"] == "call.answered" && device {
                    let session = data["payload"]["call_session_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let seen = b.answers.entry(session).or_default();
                    *seen += 1;
                    *seen - 1
                } else {
                    0
                }
            }
        };
        (pick % n, n)
    }
}

/// Forwards a signed webhook unchanged to a node, failing over when the node is down.
async fn forward(State(proxy): State<Proxy>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (first, n) = proxy.first_choice(&parsed);
    for k in 0..n {
        let target = (first + k) % n;
        let node = proxy.balancer.lock().unwrap().nodes[target].clone();
        let mut req = proxy.http.post(format!("{node}/webhooks/telnyx"));
        for name in [
            "content-type",
            "telnyx-signature-ed25519",
            "telnyx-timestamp",
        ] {
            if let Some(v) = headers.get(name) {
                req = req.header(name, v.as_bytes());
            }
        }
        if let Ok(resp) = req.body(body.clone()).send().await {
            let mut b = proxy.balancer.lock().unwrap();
            b.delivered.resize(n, 0);
            b.delivered[target] += 1;
            return StatusCode::from_u16(resp.status().as_u16()).unwrap();
        }
    }
    StatusCode::BAD_GATEWAY
}

/// A `ringmaster serve` child process; killed (SIGKILL) when dropped.
struct Node {
    child: Option<Child>,
    url: String,
    addr: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's stderr, colours removed.
    fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut plain = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // An SGR sequence: ESC [ ... m
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a cluster is set up.
#[derive(Clone, Default)]
struct Setup {
    nodes: usize,
    ring_timeout_secs: Option<u32>,
    lease_secs: Option<u32>,
    dials_per_sec: Option<u32>,
    /// `RINGMASTER_FAULT` for node 0.
    fault: Option<&'static str>,
    presence_timeout_secs: Option<u32>,
}

struct Cluster {
    emulator: EmulatorHandle,
    nodes: Vec<Node>,
    proxy: Proxy,
    http: reqwest::Client,
    schema: String,
    db_url: String,
    app_id: String,
    dir: tempfile::TempDir,
}

struct Device {
    id: String,
    token: String,
    sip_uri: String,
}

struct User {
    id: String,
    number: String,
    devices: Vec<Device>,
}

impl Cluster {
    async fn start(setup: Setup) -> Self {
        let (db_url, schema) = postgres_schema().await;
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let proxy = Proxy {
            balancer: Arc::default(),
            http: http.clone(),
        };
        let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb_addr = lb.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/webhooks/telnyx", axum::routing::post(forward))
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(lb, app).await });
        let mut emu = EmulatorConfig::for_tests(Some(format!("http://{lb_addr}/webhooks/telnyx")));
        // Dialled legs ring far longer than the servers' ring timeout: only a node ends them.
        emu.telnyx_second = Duration::from_secs(10);
        emu.webhook_timeout = Duration::from_secs(10);
        emu.signing_key = Some(WebhookSigner::generate());
        let emulator = Emulator::start(emu).await.unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mut cluster = Self {
            emulator,
            nodes: Vec::new(),
            proxy,
            http,
            schema,
            db_url,
            // Per test: the NATS subject is per app, and tests share the NATS server.
            app_id: format!("cluster-{}-{nanos}", std::process::id()),
            dir,
        };
        for i in 0..setup.nodes {
            let fault = if i == 0 { setup.fault } else { None };
            let node = cluster.spawn(i, &setup, fault).await;
            cluster.nodes.push(node);
        }
        cluster.proxy.balancer.lock().unwrap().nodes =
            cluster.nodes.iter().map(|n| n.url.clone()).collect();
        cluster
    }

    async fn spawn(&self, i: usize, setup: &Setup, fault: Option<&str>) -> Node {
        let log = self.dir.path().join(format!("node-{i}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmaster"));
        cmd.arg("serve")
            .env_remove("RINGMASTER_LOG_FORMAT")
            .env_remove("RINGMASTER_CONFIG")
            .env("RUST_LOG", "info")
            .env("RINGMASTER_LISTEN", "127.0.0.1:0")
            .env("RINGMASTER_DATABASE_URL", &self.db_url)
            .env("RINGMASTER_NATS_URL", NATS)
            .env("RINGMASTER_NODE_ID", format!("node-{i}"))
            .env("RINGMASTER_ADMIN_TOKEN", ADMIN)
            .env("RINGMASTER_TOKEN_SECRET", "cluster-token-secret")
            .env("RINGMASTER_PUSHER_SECRET", common::PUSHER_SECRET)
            .env("RINGMASTER_PUSHER_KEY", common::PUSHER_KEY)
            .env("RINGMASTER_PUSHER_APP_ID", &self.app_id)
            .env("RINGMASTER_TELNYX_API_KEY", "cluster-test-key")
            .env("RINGMASTER_TELNYX_API_URL", self.emulator.base_url())
            .env(
                "RINGMASTER_TELNYX_PUBLIC_KEY",
                self.emulator.public_key_b64(),
            )
            .env("RINGMASTER_TELNYX_CONNECTION_ID", "cluster-connection")
            .env(
                "RINGMASTER_TELNYX_DIALS_PER_SEC",
                setup.dials_per_sec.unwrap_or(10_000).to_string(),
            )
            .env(
                "RINGMASTER_RING_TIMEOUT_SECS",
                setup.ring_timeout_secs.unwrap_or(30).to_string(),
            )
            .env(
                "RINGMASTER_LEASE_SECS",
                setup.lease_secs.unwrap_or(30).to_string(),
            )
            .env(
                "RINGMASTER_PRESENCE_TIMEOUT_SECS",
                setup.presence_timeout_secs.unwrap_or(15).to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        match fault {
            Some(f) => cmd.env("RINGMASTER_FAULT", f),
            None => cmd.env_remove("RINGMASTER_FAULT"),
        };
        let mut child = cmd.spawn().expect("start ringmaster serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            // Keep draining stdout so the node never blocks on a full pipe.
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(url) = line
                    .strip_prefix("ringmaster listening on ")
                    .and_then(|rest| rest.split_whitespace().next())
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.to_owned());
                    }
                }
            }
        });
        let url = match tokio::time::timeout(PATIENCE, rx).await {
            Ok(Ok(url)) => url,
            _ => panic!(
                "node {i} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        let addr = url.trim_start_matches("http://").parse().unwrap();
        Node {
            child: Some(child),
            url,
            addr,
            log,
        }
    }

    fn route(&self, route: Route) {
        self.proxy.balancer.lock().unwrap().route = Some(route);
    }

    async fn admin(&self, node: usize, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.nodes[node].url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    /// A user with one device per platform, created through node 0.
    async fn user(&self, platforms: &[&str]) -> User {
        let number = fresh_number();
        let user = self
            .admin(
                0,
                "/api/admin/users",
                json!({"name": "Cluster user", "numbers": [number]}),
            )
            .await;
        let id = user["id"].as_str().unwrap().to_owned();
        let mut devices = Vec::new();
        for (i, platform) in platforms.iter().enumerate() {
            let sip_uri = format!("sip:{platform}-{i}-{}@cluster.invalid", &number[1..]);
            let d = self
                .admin(
                    0,
                    &format!("/api/admin/users/{id}/devices"),
                    json!({"platform": platform, "sip_uri": sip_uri}),
                )
                .await;
            devices.push(Device {
                id: d["id"].as_str().unwrap().to_owned(),
                token: d["token"].as_str().unwrap().to_owned(),
                sip_uri,
            });
        }
        User {
            id,
            number,
            devices,
        }
    }

    fn legs(&self, call: &CallSessionId, user: &User) -> Option<Vec<CallSnapshot>> {
        let calls = self.emulator.calls();
        user.devices
            .iter()
            .map(|d| {
                calls
                    .iter()
                    .find(|c| &c.call_session_id == call && c.to == d.sip_uri)
                    .cloned()
            })
            .collect()
    }

    /// Waits until every device of `user` rings for `call`; their legs in device order.
    async fn ringing(&self, call: &CallSessionId, user: &User) -> Vec<CallControlId> {
        eventually("every device rings", || {
            let legs = self.legs(call, user)?;
            legs.iter()
                .all(|l| l.state == LegState::Ringing)
                .then(|| legs.into_iter().map(|l| l.call_control_id).collect())
        })
        .await
    }

    /// Waits until the caller's leg `caller` is bridged, then hangs it up.
    async fn hang_up_once_bridged(&self, caller: &CallControlId) {
        eventually("the call is bridged", || {
            self.emulator.call(caller)?.bridged_with.map(|_| ())
        })
        .await;
        self.emulator.hangup(caller).unwrap();
    }

    /// Waits until every device leg of `call` has ended.
    async fn released(&self, call: &CallSessionId, user: &User) {
        eventually("every leg is released", || {
            let legs = self.legs(call, user)?;
            legs.iter()
                .all(|l| l.state == LegState::Ended)
                .then_some(())
        })
        .await;
    }

    /// Waits until no outbox effect is pending on any node, and every webhook is delivered.
    async fn settled(&self) {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let pending: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM outbox WHERE status = 'pending' AND lane <> 'host'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            if pending == 0 && self.emulator.pending_webhooks() == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{pending} effects still pending\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i} ---\n{}", n.log_text()))
            .collect()
    }

    fn dials_to(&self, sip_uri: &str) -> usize {
        self.emulator
            .commands()
            .iter()
            .filter(|c| c.action == "dial" && c.outcome == CommandOutcome::Executed)
            .filter(|c| c.body["to"] == sip_uri)
            .count()
    }

    /// The users of presence `channel` as node `node` lists them (Pusher's signed HTTP API).
    async fn presence_users(&self, node: usize, channel: &str) -> Vec<String> {
        let path = format!("/apps/{}/channels/{channel}/users", self.app_id);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let query = ringmaster_realtime::signing::sign_api_request(
            common::PUSHER_KEY,
            common::PUSHER_SECRET,
            "GET",
            &path,
            b"",
            now,
        );
        let resp = self
            .http
            .get(format!("{}{path}?{query}", self.nodes[node].url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Polls node `node`'s users of `channel` until they are `expected`.
    async fn await_presence(&self, node: usize, channel: &str, expected: &[&str]) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let users = self.presence_users(node, channel).await;
            if users == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {node} lists {users:?} on {channel}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        drop_postgres_schema(&self.schema).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Command ids received more than once (a retry after a failure would show here too; none
/// of these tests injects one).
fn repeated_command_ids(commands: &[CommandRecord]) -> Vec<String> {
    let mut seen = HashSet::new();
    commands
        .iter()
        .filter_map(|c| c.command_id.clone())
        .filter(|id| !seen.insert(id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_inbound_call_dials_each_device_once_across_two_nodes() {
    let cluster = Cluster::start(Setup {
        nodes: 2,
        ..Setup::default()
    })
    .await;
    // Webhooks alternate between the nodes, as behind a round-robin load balancer.
    cluster.route(Route::RoundRobin);
    let user = cluster.user(&["ios", "android", "web"]).await;
    let inbound = cluster.emulator.inbound_call(CALLER, &user.number);
    cluster.ringing(&inbound.call_session_id, &user).await;
    cluster.emulator.hangup(&inbound.call_control_id).unwrap();
    cluster.released(&inbound.call_session_id, &user).await;
    cluster.settled().await;
    for d in &user.devices {
        assert_eq!(cluster.dials_to(&d.sip_uri), 1, "{}", d.sip_uri);
    }
    assert_eq!(
        repeated_command_ids(&cluster.emulator.commands()),
        Vec::<String>::new()
    );
    // Every log line names its node, and so does `/readyz`.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let log = node.log_text();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| ["INFO", "WARN", "ERROR"].iter().any(|lvl| l.contains(lvl)))
            .collect();
        assert!(!lines.is_empty(), "node {i} logged nothing");
        for line in lines {
            assert!(line.contains(&format!("node_id=node-{i}")), "{line}");
        }
        let ready: Value = cluster
            .http
            .get(format!("{}/readyz", node.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["node_id"], format!("node-{i}"), "{ready}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_racing_on_two_nodes_bridge_once_per_call() {
    const CALLS: usize = 200;
    const USERS: usize = 20;
    let cluster = Arc::new(
        Cluster::start(Setup {
            nodes: 2,
            ..Setup::default()
        })
        .await,
    );
    cluster.route(Route::SplitAnswers);
    let mut users = Vec::new();
    for _ in 0..USERS {
        users.push(cluster.user(&["ios", "android"]).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        let cluster = cluster.clone();
        tasks.spawn(async move {
            let mut calls = Vec::new();
            for _ in 0..CALLS / USERS {
                let inbound = cluster.emulator.inbound_call(CALLER, &user.number);
                let legs = cluster.ringing(&inbound.call_session_id, &user).await;
                cluster.emulator.answer(&legs[0]).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                // The loser may already be hung up (its leg released): that is fine.
                let _ = cluster.emulator.answer(&legs[1]);
                cluster.hang_up_once_bridged(&inbound.call_control_id).await;
                cluster.released(&inbound.call_session_id, &user).await;
                calls.push(inbound.call_control_id);
            }
            calls
        });
    }
    let mut callers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        callers.extend(done.unwrap());
    }
    cluster.settled().await;
    let commands = cluster.emulator.commands();
    let mut bridges: HashMap<String, usize> = HashMap::new();
    for c in commands
        .iter()
        .filter(|c| c.action == "bridge" && c.outcome == CommandOutcome::Executed)
    {
        *bridges
            .entry(c.call_control_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(callers.len(), CALLS);
    for caller in &callers {
        assert_eq!(
            bridges.get(caller.as_str()),
            Some(&1),
            "caller leg {caller}"
        );
    }
    assert_eq!(repeated_command_ids(&commands), Vec::<String>::new());
    let raced = cluster
        .proxy
        .balancer
        .lock()
        .unwrap()
        .answers
        .values()
        .filter(|n| **n == 2)
        .count();
    assert!(raced > 0, "no call had both answers reach the nodes");
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.stop().await,
        Err(_) => panic!("the cluster is still shared"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_node_b_hears_a_call_handled_by_node_a_once() {
    let cluster = Cluster::start(Setup {
        nodes: 2,
        ..Setup::default()
    })
    .await;
    cluster.route(Route::To(0));
    let user = cluster.user(&["ios", "web"]).await;
    let mut socket = PusherClient::connect(cluster.nodes[1].addr).await;
    let channel = format!("private-user.{}", user.id);
    socket.subscribe(&user.devices[1].token, &channel).await;

    let inbound = cluster.emulator.inbound_call(CALLER, &user.number);
    let legs = cluster.ringing(&inbound.call_session_id, &user).await;
    cluster.emulator.answer(&legs[0]).unwrap();
    cluster.hang_up_once_bridged(&inbound.call_control_id).await;
    // Events on one channel keep commit order, so the answered device's ENDED (the call's
    // last event) comes after every other event of the call, repeats included.
    let mut seen = Vec::new();
    loop {
        let (event, _, data) = socket.next_event().await;
        if data["call_session_id"] != inbound.call_session_id.as_str() {
            continue;
        }
        seen.push((event.clone(), data.clone()));
        if event == "call_state_changed" && data["state"] == "ENDED" {
            break;
        }
    }
    cluster.settled().await;
    let count = |name: &str| seen.iter().filter(|(e, _)| e == name).count();
    assert_eq!(count("incoming_call"), 1, "{seen:?}");
    assert_eq!(count("call_ended"), 1, "{seen:?}");
    let ids: Vec<&Value> = seen.iter().map(|(_, d)| &d["effect_id"]).collect();
    assert!(ids.iter().all(|id| id.is_string()), "{seen:?}");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no event twice"
    );
    let delivered = cluster.proxy.balancer.lock().unwrap().delivered.clone();
    assert!(
        delivered[0] > 0 && delivered.get(1).copied().unwrap_or(0) == 0,
        "{delivered:?}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_node_a_dies_mid_ring_node_b_times_the_call_out() {
    let mut cluster = Cluster::start(Setup {
        nodes: 2,
        ring_timeout_secs: Some(5),
        ..Setup::default()
    })
    .await;
    cluster.route(Route::To(0));
    let user = cluster.user(&["ios", "android", "web"]).await;
    let inbound = cluster.emulator.inbound_call(CALLER, &user.number);
    let legs = cluster.ringing(&inbound.call_session_id, &user).await;
    cluster.nodes[0].kill();
    eventually("every leg, the caller's too, is hung up by node B", || {
        let snapshots = cluster.legs(&inbound.call_session_id, &user)?;
        let caller = cluster.emulator.call(&inbound.call_control_id)?;
        (snapshots.iter().all(|l| l.state == LegState::Ended) && caller.state == LegState::Ended)
            .then_some(())
    })
    .await;
    for leg in &legs {
        let hangups = cluster
            .emulator
            .executed("hangup")
            .into_iter()
            .filter(|c| c.call_control_id.as_deref() == Some(leg.as_str()))
            .count();
        assert_eq!(hangups, 1, "leg {leg}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dying_between_claim_and_dispatch_is_covered_once_its_lease_expires() {
    let setup = Setup {
        nodes: 1,
        // The shortest lease `serve` accepts.
        lease_secs: Some(20),
        fault: Some("exit_after_claim"),
        ..Setup::default()
    };
    let mut cluster = Cluster::start(setup.clone()).await;
    cluster.route(Route::To(0));
    let user = cluster.user(&["ios", "android"]).await;
    let inbound = cluster.emulator.inbound_call(CALLER, &user.number);
    // Node A commits the call, claims its dials and dies before sending any.
    let child = cluster.nodes[0].child.as_mut().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node A never claimed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster.emulator.executed("dial").len(), 0);
    // Node B starts only now, so the rows are certainly node A's; it waits out the lease.
    let b = cluster.spawn(1, &setup, None).await;
    cluster
        .proxy
        .balancer
        .lock()
        .unwrap()
        .nodes
        .push(b.url.clone());
    cluster.nodes.push(b);
    cluster.ringing(&inbound.call_session_id, &user).await;
    cluster.settled().await;
    for d in &user.devices {
        assert_eq!(cluster.dials_to(&d.sip_uri), 1, "{}", d.sip_uri);
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_dial_budget() {
    const RATE: u32 = 10;
    const WINDOW_MS: u64 = 5_000;
    const CALLS: usize = 40;
    let cluster = Cluster::start(Setup {
        nodes: 3,
        dials_per_sec: Some(RATE),
        ..Setup::default()
    })
    .await;
    cluster.route(Route::RoundRobin);
    let mut users = Vec::new();
    for _ in 0..CALLS {
        users.push(cluster.user(&["ios", "android", "web"]).await);
    }
    for user in &users {
        cluster.emulator.inbound_call(CALLER, &user.number);
    }
    let wanted = CALLS * 3;
    eventually("every device is dialled", || {
        let dials = cluster.emulator.executed("dial").len();
        (dials >= wanted).then_some(())
    })
    .await;
    let times: Vec<u64> = cluster
        .emulator
        .executed("dial")
        .iter()
        .map(|c| c.at_ms)
        .collect();
    assert_eq!(times.len(), wanted);
    // Far more dials than one window allows were asked for at once: each node alone would
    // have sent a window's worth, three nodes three times that.
    let allowed = (RATE as u64 * WINDOW_MS / 1000) as usize;
    assert!(wanted > 2 * allowed);
    let busiest = times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < start + WINDOW_MS)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= allowed,
        "{busiest} dials within {WINDOW_MS} ms; the account allows {allowed}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_migrating_a_fresh_schema_together_apply_each_migration_once() {
    let (db_url, schema) = postgres_schema().await;
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = db_url.clone();
            tokio::spawn(async move { ringmaster_store::migrate(&url).await.unwrap() })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap());
    }
    let versions: Vec<i64> = applied.iter().map(|m| m.version).collect();
    let distinct: HashSet<i64> = versions.iter().copied().collect();
    assert_eq!(versions.len(), distinct.len(), "{versions:?}");
    assert!(distinct.contains(&1), "{versions:?}");
    // The binary says so too, and a second run has nothing to do.
    let out = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .arg("migrate")
        .env("RINGMASTER_DATABASE_URL", &db_url)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "schema is current: nothing to apply"
    );
    drop_postgres_schema(&schema).await;
}

#[test]
fn postgres_without_a_shared_secret_is_refused_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .arg("serve")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("RINGMASTER_TOKEN_SECRET")
        .env_remove("RINGMASTER_CONFIG")
        .env("RINGMASTER_LISTEN", "127.0.0.1:0")
        .env(
            "RINGMASTER_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        )
        .env("RINGMASTER_ADMIN_TOKEN", ADMIN)
        .env("RINGMASTER_PUSHER_SECRET", "pusher-secret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("RINGMASTER_TOKEN_SECRET"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_nodes_and_a_killed_nodes_members_time_out() {
    let mut cluster = Cluster::start(Setup {
        nodes: 2,
        presence_timeout_secs: Some(2),
        ..Setup::default()
    })
    .await;
    let user = cluster.user(&["web", "web"]).await;
    let channel = format!("presence-user.{}", user.id);
    let mut on_a = PusherClient::connect(cluster.nodes[0].addr).await;
    let presence = on_a
        .subscribe_presence(&user.devices[0].token, &channel)
        .await;
    assert_eq!(presence["ids"], json!([user.id]));
    // Node B, which holds no socket of the user, lists them.
    cluster.await_presence(1, &channel, &[&user.id]).await;
    let mut on_b = PusherClient::connect(cluster.nodes[1].addr).await;
    let presence = on_b
        .subscribe_presence(&user.devices[1].token, &channel)
        .await;
    assert_eq!(presence["count"], 1, "one user, present on both nodes");
    assert_eq!(presence["hash"][&user.id]["name"], "Cluster user");
    drop(on_b);

    // Node A dies without a word: B drops its members once A's heartbeats stop.
    cluster.nodes[0].kill();
    drop(on_a);
    cluster.await_presence(1, &channel, &[]).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_through_node_a_closes_the_devices_socket_on_node_b() {
    let cluster = Cluster::start(Setup {
        nodes: 2,
        ..Setup::default()
    })
    .await;
    let user = cluster.user(&["web", "web"]).await;
    let (gone, kept) = (&user.devices[0], &user.devices[1]);
    let channel = format!("private-user.{}", user.id);
    // The socket lives on B, but the load balancer sent its channel auth to A.
    let mut gone_ws = PusherClient::connect(cluster.nodes[1].addr).await;
    gone_ws
        .subscribe_via(cluster.nodes[0].addr, &gone.token, &channel)
        .await;
    let mut kept_ws = PusherClient::connect(cluster.nodes[1].addr).await;
    kept_ws.subscribe(&kept.token, &channel).await;

    let resp = cluster
        .http
        .delete(format!(
            "{}/api/admin/devices/{}",
            cluster.nodes[0].url, gone.id
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["sockets_closed"], 0, "none of its sockets is on A");
    let (_, ended) = gone_ws.until_closed().await;
    assert_eq!(ended, Ended::Close(4009));
    // The user's other device keeps its socket and can still subscribe.
    kept_ws
        .subscribe_presence(&kept.token, &format!("presence-user.{}", user.id))
        .await;
    cluster.stop().await;
}
