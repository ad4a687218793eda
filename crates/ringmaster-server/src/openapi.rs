//! The OpenAPI 3.1 document (`GET /api/openapi.json`), generated from the handlers'
//! annotations and typed bodies, and its rendered page (`GET /api/docs`, Swagger UI bundled
//! into the binary, so it works without network access).

use crate::routes::{admin, health, quality, timeline, voip, webhook_endpoints, webhooks};
use axum::Router;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, ObjectBuilder, OpenApi as Document, Required};
use utoipa::{Modify, OpenApi};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// Where the rendered page is served.
pub const DOCS_PATH: &str = "/api/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ringmaster",
        description = "Call-state coordination for simultaneous ring across phones, tablets and browsers. \
            Admin routes take the admin token, device routes a device token, both as `Authorization: Bearer`."
    ),
    paths(
        admin::create_user,
        admin::get_user,
        admin::update_user,
        admin::create_device,
        admin::sandbox,
        webhook_endpoints::create,
        webhook_endpoints::list,
        webhook_endpoints::get,
        webhook_endpoints::delete,
        voip::call_status,
        voip::my_active_call,
        voip::place_call,
        voip::history,
        voip::call_detail,
        voip::report,
        voip::decline,
        voip::ignore,
        voip::register_push_token,
        voip::remove_push_token,
        webhooks::telnyx,
        health::healthz,
        health::readyz,
        quality::ingest,
        quality::report,
        quality::export,
        quality::fleet_view,
        crate::web::me,
        crate::web::my_ringing_calls,
        crate::web::sandbox_incoming_call,
        crate::web::sandbox_answer,
        crate::operator::live_calls,
        crate::operator::dismissal_latency,
        timeline::call_timeline,
        admin::revoke_device,
        admin::reissue_token,
    ),
    modifiers(&Extras),
    tags(
        (name = "admin", description = "Users, numbers and devices (admin token)"),
        (name = "device", description = "The device API (device token)"),
        (name = "telnyx", description = "Telnyx Call Control webhooks"),
        (name = "realtime", description = "Pusher-protocol WebSocket and its HTTP API"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// Security schemes, and the routes whose handlers live outside this crate's annotated
/// modules (the Pusher-protocol layer, metrics, the document itself).
struct Extras;

fn plain(description: &str, content_type: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(content_type, Content::new(Some(ObjectBuilder::new())))
        .build()
}

fn operation(tag: &str, summary: &str, responses: &[(&str, &str, &str)]) -> OperationBuilder {
    let mut op = OperationBuilder::new().tag(tag).summary(Some(summary));
    for (status, description, content_type) in responses {
        op = op.response(*status, plain(description, content_type));
    }
    op
}

fn form_body(description: &str, content_type: &str) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .description(Some(description))
        .content(
            content_type,
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new()))
                .build(),
        )
        .required(Some(Required::True))
        .build()
}

impl Modify for Extras {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for name in ["admin_token", "device_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
        let app_key = utoipa::openapi::path::ParameterBuilder::new()
            .name("key")
            .parameter_in(utoipa::openapi::path::ParameterIn::Path)
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new().schema_type(utoipa::openapi::Type::String),
            ))
            .build();
        let app_id = utoipa::openapi::path::ParameterBuilder::new()
            .name("app_id")
            .parameter_in(utoipa::openapi::path::ParameterIn::Path)
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new().schema_type(utoipa::openapi::Type::String),
            ))
            .build();
        let channel = utoipa::openapi::path::ParameterBuilder::new()
            .name("channel")
            .parameter_in(utoipa::openapi::path::ParameterIn::Path)
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new().schema_type(utoipa::openapi::Type::String),
            ))
            .build();
        let json = "application/json";
        let extra = PathsBuilder::new()
            .path(
                "/app/{key}",
                PathItem::new(
                    HttpMethod::Get,
                    operation(
                        "realtime",
                        "Pusher protocol 7 WebSocket (upgrade); channel auth by device token",
                        &[
                            ("101", "Switching to the WebSocket protocol", json),
                            ("4XX", "Not a WebSocket upgrade", json),
                        ],
                    )
                    .parameter(app_key),
                ),
            )
            .path(
                "/broadcasting/auth",
                PathItem::new(
                    HttpMethod::Post,
                    operation(
                        "realtime",
                        "Signs a private or presence channel subscription (laravel-echo's authEndpoint)",
                        &[
                            ("200", "The channel signature", json),
                            ("4XX", "Refused", json),
                        ],
                    )
                    .request_body(Some(form_body(
                        "socket_id and channel_name",
                        "application/x-www-form-urlencoded",
                    ))),
                ),
            )
            .path(
                "/apps/{app_id}/events",
                PathItem::new(
                    HttpMethod::Post,
                    operation(
                        "realtime",
                        "Pusher HTTP API: publish one event (signed with the app secret)",
                        &[("200", "Published", json), ("4XX", "Refused", json)],
                    )
                    .parameter(app_id.clone())
                    .request_body(Some(form_body("A Pusher event", json))),
                ),
            )
            .path(
                "/apps/{app_id}/batch_events",
                PathItem::new(
                    HttpMethod::Post,
                    operation(
                        "realtime",
                        "Pusher HTTP API: publish up to 10 events (signed with the app secret)",
                        &[("200", "Published", json), ("4XX", "Refused", json)],
                    )
                    .parameter(app_id.clone())
                    .request_body(Some(form_body("Pusher events", json))),
                ),
            )
            .path(
                "/apps/{app_id}/channels/{channel}/users",
                PathItem::new(
                    HttpMethod::Get,
                    operation(
                        "realtime",
                        "Pusher HTTP API: a presence channel's users on every node (signed)",
                        &[("200", "{\"users\":[{\"id\"}]}", json), ("4XX", "Refused", json)],
                    )
                    .parameter(app_id)
                    .parameter(channel),
                ),
            )
            .path(
                "/api/web/config",
                PathItem::new(
                    HttpMethod::Get,
                    operation(
                        "operations",
                        "What the web console needs before it has a token: pusher_key, sandbox",
                        &[("200", "Console configuration", "application/json")],
                    ),
                ),
            )
            .path(
                "/metrics",
                PathItem::new(
                    HttpMethod::Get,
                    operation(
                        "operations",
                        "Prometheus metrics (text format); on RINGMASTER_METRICS_LISTEN when set",
                        &[("200", "Metrics", "text/plain")],
                    ),
                ),
            )
            .path(
                DOCUMENT_PATH,
                PathItem::new(
                    HttpMethod::Get,
                    operation(
                        "operations",
                        "This OpenAPI document",
                        &[("200", "The document", json)],
                    ),
                ),
            )
            .path(
                DOCS_PATH,
                PathItem::new(
                    HttpMethod::Get,
                    operation(
                        "operations",
                        "The document rendered (Swagger UI); redirects to the page's own path",
                        &[
                            ("200", "An HTML page", "text/html"),
                            ("3XX", "Redirect to the page", "text/html"),
                        ],
                    ),
                ),
            )
            .build();
        doc.paths.paths.extend(extra.paths);
    }
}

/// The OpenAPI document of every route the coordinator serves.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json` and the rendered page under `/api/docs`.
pub fn routes() -> Router {
    utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .url(DOCUMENT_PATH, document())
        .into()
}
