//! The OpenAPI document against the router: every route is described, and served.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use std::collections::BTreeSet;

/// The paths an axum router serves, read from its debug form (axum has no route listing),
/// without the two axum registers for the fallback (`/` and its catch-all).
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    debug
        .split('"')
        .filter(|s| s.starts_with('/') && !s.contains(' '))
        .filter(|s| *s != "/" && !s.contains("__private__axum_fallback"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_document_and_every_documented_path_is_served() {
    let h = Harness::start(Options {
        realtime: true,
        ..Options::default()
    })
    .await;
    let server = h.server();
    let routes = ringmaster_server::server::all_routes(server.state(), server.realtime());
    // The web console's pages and assets are not API: they are served, not described.
    let console = router_paths(&ringmaster_server::web::routes(None, false));
    let served: BTreeSet<String> = router_paths(&routes)
        .into_iter()
        .filter(|p| !console.contains(p) || p.starts_with("/api/"))
        .collect();
    assert!(
        served.contains("/api/voip/calls/{call_id}/decline") && served.contains("/app/{key}"),
        "the router's paths could not be read: {served:?}"
    );

    let (status, doc) = h
        .request(
            Method::GET,
            ringmaster_server::openapi::DOCUMENT_PATH,
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    // The rendered page serves its assets under its own path.
    let docs = ringmaster_server::openapi::DOCS_PATH;
    let missing: Vec<&String> = served
        .iter()
        .filter(|p| !documented.contains(*p) && !p.starts_with(&format!("{docs}/")))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let stale: Vec<&String> = documented.difference(&served).collect();
    assert!(stale.is_empty(), "documented but not served: {stale:?}");

    // Every documented operation reaches a handler: no "no such route", no 405.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let concrete = path
                .replace("{call_id}", "nope")
                .replace("{user_id}", "nope")
                .replace("{device_id}", "nope")
                .replace("{key}", "nope")
                .replace("{app_id}", "nope")
                .replace("{id}", "nope");
            let (status, body) = h.request(method.clone(), &concrete, None, None).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                body["error"]["message"] != "no such route",
                "{method} {path} is documented but not routed"
            );
        }
    }

    let page = h
        .http
        .get(format!("{}{docs}/", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text().await.unwrap().contains("swagger"),
        "a rendered page"
    );
}
