//! The JSON API's handlers: thin reads of the state database and the daemon, and the two
//! actions (run a job, acknowledge an alert).

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{require_admin, status, Answer, ApiError, Caller, Web};
use crate::audit::Event;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The OpenAPI document describing this API (kept in the repository, tested against it).
pub async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

pub async fn status(State(web): State<Arc<Web>>) -> Answer<serde_json::Value> {
    Ok(Json(status::status(&web.daemon)?))
}

pub async fn jobs(State(web): State<Arc<Web>>) -> Answer<Vec<status::JobView>> {
    Ok(Json(status::jobs(&web.daemon)?))
}

pub async fn run_job(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&caller)?;
    let config = web.daemon.config();
    let job = config
        .config
        .jobs
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job '{name}'")))?;
    let trigger = format!("api:{}", caller.name);
    let started = web.daemon.start(job, &trigger, None);
    let result = match &started {
        Ok(Some(run)) => format!("started run {run}"),
        Ok(None) => "started".to_string(),
        Err(e) => format!("refused: {e:#}"),
    };
    let event = Event::now("run job", &name, &result).by(&trigger, "api");
    web.daemon.audit(job.repository.as_deref(), &event);
    let run = started.map_err(|e| ApiError::new(StatusCode::CONFLICT, format!("{e:#}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "job": name, "run": run })),
    ))
}

#[derive(Deserialize)]
pub struct RunsQuery {
    job: Option<String>,
    limit: Option<usize>,
}

pub async fn runs(
    State(web): State<Arc<Web>>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer<Vec<crate::daemon::state::Run>> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{e}; the query takes job=NAME and limit=N (1 to 1000)"),
        )
    })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "limit is 1 to 1000"));
    }
    Ok(Json(
        web.daemon
            .with_state(|s| s.runs(q.job.as_deref(), limit, false))?,
    ))
}

fn id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("'{text}' is not an id")))
}

pub async fn run(
    State(web): State<Arc<Web>>,
    Path(text): Path<String>,
) -> Answer<crate::daemon::state::Run> {
    let id = id(&text)?;
    web.daemon
        .with_state(|s| s.run(id))?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no run {id}")))
}

pub async fn drills(State(web): State<Arc<Web>>) -> Answer<Vec<crate::daemon::state::Drill>> {
    Ok(Json(web.daemon.with_state(|s| s.drills(500))?))
}

pub async fn alerts(State(web): State<Arc<Web>>) -> Answer<Vec<crate::daemon::state::Alert>> {
    Ok(Json(web.daemon.with_state(|s| s.alerts(false))?))
}

pub async fn acknowledge(
    State(web): State<Arc<Web>>,
    Extension(caller): Extension<Caller>,
    Path(text): Path<String>,
) -> Answer<serde_json::Value> {
    require_admin(&caller)?;
    let id = id(&text)?;
    if !web.daemon.with_state(|s| s.acknowledge(id, &caller.name))? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no alert {id}"),
        ));
    }
    let event = Event::now("acknowledge alert", &format!("alert {id}"), "success")
        .by(&format!("api:{}", caller.name), "api");
    web.daemon.audit(None, &event);
    Ok(Json(
        serde_json::json!({ "alert": id, "acknowledged_by": caller.name }),
    ))
}

/// Every source backup of the last `days` (default 30, at most 366), oldest first.
pub async fn history(
    State(web): State<Arc<Web>>,
    query: super::DaysAsked,
) -> Answer<Vec<crate::daemon::state::SourcePoint>> {
    let since = super::since_days(query)?;
    Ok(Json(web.daemon.with_state(|s| s.source_history(since))?))
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<usize>,
}

/// The newest alert deliveries (default 50, at most 1000), failed ones with their error.
pub async fn deliveries(
    State(web): State<Arc<Web>>,
    query: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer<Vec<crate::daemon::state::Delivery>> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "limit is 1 to 1000"));
    }
    Ok(Json(web.daemon.with_state(|s| s.deliveries(limit))?))
}
