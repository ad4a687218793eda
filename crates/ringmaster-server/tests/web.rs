//! The web console's server side: the embedded pages, `/api/voip/me`, the ringing calls a
//! reconnecting page reads back, the operator's live calls and dismissal latency. The page
//! itself is tested in a real browser by `scripts/test-web`.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_its_assets() {
    let h = Harness::start(Options::default()).await;
    for path in ["/", "/operator"] {
        let resp = h.http.get(format!("{}{path}", h.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = resp.text().await.unwrap();
        assert!(page.contains("/assets/app.js"), "{page}");
    }
    let js = h
        .http
        .get(format!("{}/assets/app.js", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.text().await.unwrap().contains("RINGING_INBOUND"));
    let (status, config) = h.request(Method::GET, "/api/web/config", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config, json!({"pusher_key": null, "sandbox": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_names_the_device_its_user_and_private_channel() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let web = &user.devices[1];
    let (status, me) = h.get("/api/voip/me", &web.token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["device_id"], web.id.as_str());
    assert_eq!(me["platform"], "web");
    assert_eq!(me["user_id"], user.id.as_str());
    assert_eq!(me["channel"], format!("private-user.{}", user.id));
    assert_eq!(me["numbers"], json!([user.number]));
    let devices: Vec<&str> = me["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, [user.devices[0].id.as_str(), web.id.as_str()]);
    assert!(!me.to_string().contains(&web.token), "no token in {me}");
    let (status, err) = h.get("/api/voip/me", "rmd_forged.00").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_page_reads_back_the_calls_ringing_it() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let stranger = h.user(&["web"], false, false).await;
    let (ios, web) = (&user.devices[0], &user.devices[1]);
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;

    let (status, ringing) = h.get("/api/voip/my-ringing-calls", &web.token).await;
    assert_eq!(status, StatusCode::OK, "{ringing}");
    let calls = ringing["ringing_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{ringing}");
    assert_eq!(calls[0]["call_session_id"], call.as_str());
    assert_eq!(calls[0]["status"], "ringing");
    assert_eq!(calls[0]["from"], CALLER);
    assert_eq!(calls[0]["to"], user.number.as_str());
    let (_, other) = h
        .get("/api/voip/my-ringing-calls", &stranger.devices[0].token)
        .await;
    assert_eq!(other["ringing_calls"], json!([]));

    // The iPhone answers and reports its dismissal-free answer; the web device reports that the
    // WebSocket dismissed it; an unknown channel name changes nothing.
    h.emulator.answer(&legs[0]).unwrap();
    h.wait_status(&call, web, "bridged").await;
    let (_, after) = h.get("/api/voip/my-ringing-calls", &web.token).await;
    assert_eq!(after["ringing_calls"], json!([]));
    let path = format!("/api/voip/calls/{call}/events");
    let bad = json!({"seq": 1, "from": "RINGING_INBOUND", "to": "ENDED", "channel": "pigeon"});
    let (status, err) = h.post(&path, &web.token, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "invalid_json", "{err}");
    let report =
        json!({"seq": 1, "from": "RINGING_INBOUND", "to": "ENDED", "channel": "websocket"});
    let (status, body) = h.post(&path, &web.token, report).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .post(
            &path,
            &ios.token,
            json!({"seq": 1, "from": "RINGING_INBOUND", "to": "ACTIVE"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, live) = h.get("/api/admin/live-calls", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{live}");
    let ids = |key: &str| -> Vec<Value> {
        live[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_session_id"].clone())
            .collect()
    };
    assert_eq!(ids("active"), [json!(call.as_str())], "{live}");
    assert_eq!(ids("ringing"), Vec::<Value>::new());
    let (status, _) = h.get("/api/admin/live-calls", &web.token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, latency) = h.get("/api/admin/dismissal-latency", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{latency}");
    let channels = latency["channels"].as_array().unwrap();
    let names: Vec<&str> = channels
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sip", "websocket", "push", "poll"]);
    assert_eq!(channels[1]["count"], 1, "{latency}");
    assert!(channels[1]["p99_ms"].is_u64(), "{latency}");
    assert_eq!(channels[0]["count"], 0);
    let (status, err) = h
        .get("/api/admin/dismissal-latency?window_secs=0", ADMIN)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");

    h.emulator.hangup(&caller).unwrap();
    let (status, err) = h
        .post(
            &format!("/api/voip/sandbox/calls/{call}/answer"),
            &web.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "outside sandbox mode: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_demo_user_is_created_once_and_its_link_signs_in() {
    let h = Harness::start(Options::default()).await;
    let first = ringmaster_server::demo::ensure(h.server().state())
        .await
        .unwrap();
    let again = ringmaster_server::demo::ensure(h.server().state())
        .await
        .unwrap();
    assert_eq!(first.web_token, again.web_token);
    let (status, me) = h.get("/api/voip/me", &first.web_token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["device_id"], "dev_demo_web");
    assert_eq!(me["numbers"], json!([ringmaster_server::demo::DEMO_NUMBER]));
    let platforms: Vec<&str> = me["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms.len(), 3, "{me}");
    for p in ["ios", "android", "web"] {
        assert!(platforms.contains(&p), "{me}");
    }
}
