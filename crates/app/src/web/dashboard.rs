//! The dashboard: one page at `/` that draws itself from the JSON API (same origin, the
//! session cookie authenticates), the login form that opens a session, logout, the page's
//! script and style, and each drill's HTML report. Every asset is compiled into the binary.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{ApiError, Web};
use crate::daemon::settings::{ApiToken, Role};
use crate::output::escape_html;

const PAGE: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
const ICON: &str = include_str!("assets/icon.svg");

/// Only this origin's scripts, styles and images; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// A drill report styles itself inline and runs nothing.
const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

fn html(status: StatusCode, body: String, csp: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Not `no-referrer`: with it, browsers send `Origin: null` on the login form.
            (header::REFERRER_POLICY, "same-origin"),
        ],
        body,
    )
        .into_response()
}

/// The page for a session; without one, the login form.
pub async fn page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let Some(session) = web.sessions.find(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let role = match session.caller.role {
        Role::Admin => "admin",
        Role::Read => "read",
    };
    let body = PAGE
        .replace("{{csrf}}", &session.csrf)
        .replace("{{role}}", role)
        .replace("{{user}}", &escape_html(&session.caller.name));
    html(StatusCode::OK, body, CSP)
}

fn login_form(status: StatusCode, message: &str) -> Response {
    let message = if message.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" id=\"login-error\">{}</p>",
            escape_html(message)
        )
    };
    html(status, LOGIN.replace("{{message}}", &message), CSP)
}

pub async fn login_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if web.sessions.find(&headers).is_some() {
        return Redirect::to("/").into_response();
    }
    login_form(StatusCode::OK, "")
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// A form posted from another site is refused (the cookie is SameSite=Strict; this also
/// stops a page elsewhere from logging a browser into a session of its choosing).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    origin_host.is_some() && origin_host == host
}

pub async fn login(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return login_form(
            StatusCode::FORBIDDEN,
            "log in from the dashboard's own page",
        );
    }
    let Ok(Form(form)) = form else {
        return login_form(StatusCode::BAD_REQUEST, "enter an API token");
    };
    let Some(caller) = web.caller_for(&ApiToken::hash_of(form.token.trim())) else {
        eprintln!("dashboard: a login with an unknown token was refused");
        return login_form(StatusCode::UNAUTHORIZED, "unknown token");
    };
    eprintln!("dashboard: token '{}' logged in", caller.name);
    let cookie = web.sessions.open(caller);
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

/// Ends the session (a POST with the CSRF header, through the authenticated routes).
pub async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let cookie = web.sessions.close(&headers);
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return ApiError::new(StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A drill's report as the `drill --html` page, from the record its run kept.
pub async fn drill_report(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no report of drill '{id}'"));
    let drill = web
        .daemon
        .with_state(|s| s.drill(&id))?
        .ok_or_else(not_found)?;
    let run = match drill.run {
        Some(run) => web.daemon.with_state(|s| s.run(run))?,
        None => None,
    };
    let record = run
        .and_then(|r| r.report)
        .into_iter()
        .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        .find(|doc| doc.get("id").and_then(|v| v.as_str()) == Some(id.as_str()))
        .and_then(|doc| serde_json::from_value(doc.get("record")?.clone()).ok())
        .ok_or_else(not_found)?;
    Ok(html(
        StatusCode::OK,
        crate::commands::drill::html(&record),
        REPORT_CSP,
    ))
}
