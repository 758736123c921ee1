//! The daemon's HTTP side: the dashboard, the JSON API, `/metrics` and `/healthz`. Every
//! route but `/healthz`, the OpenAPI document, the login form and the page's assets needs a
//! bearer token or a dashboard session; running a job or acknowledging an alert needs an
//! admin token. Errors are JSON (`{"error": ...}`) with a 4xx status; nothing here panics on
//! input.

mod api;
mod charts;
mod dashboard;
mod metrics;
mod session;
mod status;
mod tls;

pub use session::Sessions;
pub use status::disk_used_percent;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::daemon::settings::{ApiToken, Role};
use crate::daemon::Daemon;

pub struct Web {
    pub daemon: Arc<Daemon>,
    pub tokens: Vec<ApiToken>,
    pub sessions: Sessions,
}

impl Web {
    /// The token whose hash was presented. Every token is compared, so the time taken does
    /// not tell which one was close.
    fn caller_for(&self, presented: &blake3::Hash) -> Option<Caller> {
        self.tokens.iter().fold(None, |found, t| {
            let hit = t.matches(presented);
            found.or(hit.then(|| Caller {
                name: t.name.clone(),
                role: t.role,
            }))
        })
    }
}

/// Who is calling: the token's name (for the audit log) and role.
#[derive(Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// An error answer: a status and a message, as JSON.
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// State database failures become 503: the daemon is up, its records are not readable.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state database: {e:#}"),
        )
    }
}

pub type Answer<T> = std::result::Result<Json<T>, ApiError>;

/// Binds `addr` now (so a port in use or an unreadable certificate is an error at start) and
/// serves on a thread of its own; over TLS when `tls` names a certificate and key file.
pub fn start(web: Web, addr: SocketAddr, tls: Option<(PathBuf, PathBuf)>) -> Result<()> {
    let acceptor = tls
        .map(|(cert, key)| tls::acceptor(&cert, &key))
        .transpose()?;
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    if web.tokens.is_empty() {
        eprintln!(
            "warning: no [daemon.tokens.NAME] configured: the API refuses every request (401)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bulwark-web")
        .enable_io()
        .enable_time()
        .build()
        .context("starting the web runtime")?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let app = router(Arc::new(web));
    std::thread::Builder::new()
        .name("bulwark-web".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return eprintln!("error: API listener: {e}"),
                };
                let served = match acceptor {
                    Some(acceptor) => {
                        axum::serve(tls::Listener::new(listener, acceptor), app).await
                    }
                    None => axum::serve(listener, app).await,
                };
                if let Err(e) = served {
                    eprintln!("error: API server stopped: {e}");
                }
            })
        })
        .context("starting the web thread")?;
    eprintln!("API listening on {scheme}://{addr}");
    Ok(())
}

fn router(web: Arc<Web>) -> Router {
    let authenticated = Router::new()
        .route("/metrics", get(metrics::prometheus))
        .route("/api/status", get(api::status))
        .route("/api/metrics", get(metrics::json))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{name}/run", post(api::run_job))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/drills", get(api::drills))
        .route("/api/alerts", get(api::alerts))
        .route("/api/alerts/{id}/acknowledge", post(api::acknowledge))
        .route("/api/history", get(api::history))
        .route("/api/deliveries", get(api::deliveries))
        .route("/charts/{file}", get(charts::chart))
        .route("/drills/{id}/report", get(dashboard::drill_report))
        .route("/logout", post(dashboard::logout))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&web),
            authenticate,
        ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/api/openapi.json", get(api::openapi))
        .route("/", get(dashboard::page))
        .route("/login", get(dashboard::login_page).post(dashboard::login))
        .route("/assets/{file}", get(dashboard::asset))
        .merge(authenticated)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(web)
}

/// Finds the caller: a bearer token, or a dashboard session whose requests that change
/// something carry its CSRF token. 401 without either, 403 without the CSRF token.
async fn authenticate(State(web): State<Arc<Web>>, mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| ApiToken::hash_of(t.trim()));
    let caller = match bearer {
        Some(presented) => match web.caller_for(&presented) {
            Some(caller) => caller,
            None => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "unknown token").into_response()
            }
        },
        None => {
            let Some(session) = web.sessions.find(req.headers()) else {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token (or a dashboard session) is required",
                )
                .into_response();
            };
            let reads = matches!(*req.method(), Method::GET | Method::HEAD);
            let csrf = req
                .headers()
                .get(session::CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            if !reads && !csrf.is_some_and(|c| session.csrf_matches(c)) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "the CSRF token is missing or wrong; reload the dashboard",
                )
                .into_response();
            }
            session.caller
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// `?days=N`: the window of history a chart or `/api/history` covers.
#[derive(serde::Deserialize)]
pub struct DaysQuery {
    days: Option<i64>,
}

pub type DaysAsked =
    std::result::Result<axum::extract::Query<DaysQuery>, axum::extract::rejection::QueryRejection>;

/// The start of the window a `days` query asks for (default 30, at most 366).
pub fn since_days(asked: DaysAsked) -> std::result::Result<jiff::Timestamp, ApiError> {
    let days = asked
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?
        .0
        .days
        .unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "days is 1 to 366"));
    }
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * days))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// 403 unless the caller is an admin.
pub fn require_admin(caller: &Caller) -> std::result::Result<(), ApiError> {
    match caller.role {
        Role::Admin => Ok(()),
        Role::Read => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token '{}' is read-only; this needs an admin token",
                caller.name
            ),
        )),
    }
}
