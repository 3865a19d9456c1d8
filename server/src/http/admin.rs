//! Provisioning and firmware over HTTP: the admin operations of the CLI
//! ([`AdminOp`], applied by the running server exactly as `lwm2m-server device ...`,
//! `bootstrap ...`, `fw ...` and `audit` apply them through the admin socket), so both paths
//! validate, audit and answer alike.
//!
//! - `GET|POST /api/devices`, `DELETE /api/devices/{ep}`, `POST /api/devices/{ep}/rotate`:
//!   the devices' credentials (`device-list`, `-add`, `-revoke`, `-rotate`).
//! - `GET|POST /api/bootstrap`, `DELETE /api/bootstrap/{ep}`: factory bootstrap accounts.
//! - `GET|POST /api/firmware/packages`, `DELETE /api/firmware/packages/{id}`: firmware
//!   packages (OMA LwM2M TS 1.2 Core Appendix E.6); an upload is streamed to a temporary file
//!   in the data directory, which `fw-add` reads, and removed afterwards.
//! - `GET|POST /api/firmware/campaigns`, `GET|DELETE /api/firmware/campaigns/{id}`: update
//!   campaigns (`fw-campaigns`, `fw-update`, `fw-status`, `fw-cancel`).
//! - `GET /api/audit?limit=`: the newest audit events.
//!
//! A reply is the [`AdminReply`] as JSON (it never holds a key: credentials are listed by
//! their public identity). A refusal (`ok: false`) is `400`, `404` when what the request
//! names does not exist, `409` when it conflicts with what exists (a package a campaign uses,
//! an identity bound to another endpoint), with the refusal's text as `{"message"}`.
use super::{ApiError, ApiState};
use crate::handle::ServerStopped;
use crate::provisioning::admin::{AdminOp, AdminReply, Refusal, MAX_AUDIT_LIMIT, MAX_REQUEST_LEN};
use crate::provisioning::credentials::NewCredential;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

/// Largest credential body: an X.509 certificate in hex with its endpoint fits many times.
pub(crate) const CREDENTIAL_BODY_LIMIT: usize = 64 * 1024;
/// Largest campaign body: what the CLI may send over the admin socket.
pub(crate) const CAMPAIGN_BODY_LIMIT: usize = MAX_REQUEST_LEN;

/// Uploads written at once: each may take `[firmware] max_package_bytes` on disk, and its
/// `fw-add` as much memory again, so their number is bounded (others wait their turn).
static UPLOADS: Semaphore = Semaphore::const_new(2);

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    let credential_limit = DefaultBodyLimit::max(CREDENTIAL_BODY_LIMIT);
    Router::new()
        .route(
            "/api/devices",
            get(device_list).post(device_add).layer(credential_limit),
        )
        .route("/api/devices/:ep", delete(device_revoke))
        .route("/api/devices/:ep/rotate", post(device_rotate))
        .route(
            "/api/bootstrap",
            get(bootstrap_list)
                .post(bootstrap_add)
                .layer(credential_limit),
        )
        .route("/api/bootstrap/:ep", delete(bootstrap_remove))
        // The upload counts its bytes itself against `[firmware] max_package_bytes`.
        .route(
            "/api/firmware/packages",
            get(package_list).post(package_upload),
        )
        .route("/api/firmware/packages/:id", delete(package_remove))
        .route(
            "/api/firmware/campaigns",
            get(campaign_list)
                .post(campaign_start)
                .layer(DefaultBodyLimit::max(CAMPAIGN_BODY_LIMIT)),
        )
        .route(
            "/api/firmware/campaigns/:id",
            get(campaign_status).delete(campaign_cancel),
        )
        .route("/api/audit", get(audit))
}

type Reply = Result<Json<AdminReply>, ApiError>;

/// Applies `op` on the running server and answers its reply.
async fn run(state: &ApiState, op: AdminOp) -> Reply {
    answer(state.handle.admin(op).await)
}

fn answer(reply: Result<AdminReply, ServerStopped>) -> Reply {
    let reply = reply?;
    if reply.ok {
        return Ok(Json(reply));
    }
    let message = reply
        .error
        .unwrap_or_else(|| "the operation was refused".into());
    Err(ApiError::new(refusal_status(reply.refusal), message))
}

/// The status of a refusal of the kind the operation said.
fn refusal_status(kind: Option<Refusal>) -> StatusCode {
    match kind {
        Some(Refusal::NotFound) => StatusCode::NOT_FOUND,
        Some(Refusal::Conflict) => StatusCode::CONFLICT,
        Some(Refusal::Internal) => StatusCode::INTERNAL_SERVER_ERROR,
        None => StatusCode::BAD_REQUEST,
    }
}

/// A JSON body, refused as `{"message"}` (axum's own rejections are plain text).
fn json_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

async fn device_list(State(state): State<ApiState>) -> Reply {
    run(&state, AdminOp::DeviceList).await
}

async fn device_add(State(state): State<ApiState>, body: Result<Bytes, BytesRejection>) -> Reply {
    let credential: NewCredential = json_body(body, "the credential")?;
    run(&state, AdminOp::DeviceAdd { credential }).await
}

async fn device_revoke(State(state): State<ApiState>, Path(endpoint): Path<String>) -> Reply {
    run(&state, AdminOp::DeviceRevoke { endpoint }).await
}

async fn device_rotate(State(state): State<ApiState>, Path(endpoint): Path<String>) -> Reply {
    run(&state, AdminOp::DeviceRotate { endpoint }).await
}

async fn bootstrap_list(State(state): State<ApiState>) -> Reply {
    run(&state, AdminOp::BootstrapList).await
}

async fn bootstrap_add(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let credential: NewCredential = json_body(body, "the credential")?;
    run(&state, AdminOp::BootstrapAdd { credential }).await
}

async fn bootstrap_remove(State(state): State<ApiState>, Path(endpoint): Path<String>) -> Reply {
    run(&state, AdminOp::BootstrapRemove { endpoint }).await
}

async fn package_list(State(state): State<ApiState>) -> Reply {
    run(&state, AdminOp::FwList).await
}

#[derive(Deserialize)]
struct UploadQuery {
    version: Option<String>,
    #[serde(default)]
    name: String,
}

/// A temporary file removed when dropped: whether the add succeeded, failed, or the request
/// was abandoned half-way (the handler's future dropped).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %self.0.display(), error = %e, "removing an uploaded firmware file");
            }
        }
    }
}

/// `POST /api/firmware/packages?version=V&name=N`: the body is the package. It is written to
/// a temporary file in the data directory as it arrives (never whole in memory here), at
/// most `[firmware] max_package_bytes`, then added with `fw-add` as the CLI adds a file.
async fn package_upload(
    State(state): State<ApiState>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let version = q.version.filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::bad_request("the query needs version=: the firmware version the package carries")
    })?;
    let max = state.config.firmware.max_package_bytes;
    let too_large = |n: u64| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the package is {n} bytes or more, more than firmware.max_package_bytes = {max}"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        return Err(too_large(n));
    }
    let _permit = UPLOADS.acquire().await.map_err(|_| ApiError::stopped())?;
    let dir = std::path::absolute(&state.config.server.data_dir).map_err(internal)?;
    let path = dir.join(format!(".upload-{:016x}.tmp", rand::random::<u64>()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(internal)?;
    let temp = TempFile(path);
    let mut written: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        written = written.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if written > max {
            return Err(too_large(written));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    drop(file);
    let op = AdminOp::FwAdd {
        path: temp.0.clone(),
        version,
        name: q.name,
    };
    let reply = run(&state, op).await;
    drop(temp);
    reply
}

/// A failure of this server's own file system, logged in full, answered `500`.
fn internal(e: std::io::Error) -> ApiError {
    tracing::warn!(error = %e, "firmware upload: writing the temporary file");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("storing the upload in the data directory: {e}"),
    )
}

async fn package_remove(State(state): State<ApiState>, Path(id): Path<String>) -> Reply {
    run(&state, AdminOp::FwRemove { id }).await
}

/// The body of `POST /api/firmware/campaigns`, as Leshan-style JSON (camelCase).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CampaignBody {
    package: String,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    all: bool,
    model: Option<String>,
    from_version: Option<String>,
    method: Option<String>,
    concurrency: Option<usize>,
    #[serde(default)]
    require_version: bool,
}

async fn campaign_start(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let b: CampaignBody = json_body(body, "the campaign")?;
    if b.all && !b.endpoints.is_empty() {
        return Err(ApiError::bad_request(
            "give either endpoints or \"all\": true, not both",
        ));
    }
    if !b.all && (b.model.is_some() || b.from_version.is_some()) {
        return Err(ApiError::bad_request(
            "model and fromVersion select among all devices: they need \"all\": true",
        ));
    }
    let op = AdminOp::FwUpdate {
        package: b.package,
        endpoints: b.endpoints,
        all: b.all,
        model: b.model,
        from_version: b.from_version,
        method: b.method,
        concurrency: b.concurrency,
        require_version: b.require_version,
    };
    run(&state, op).await
}

async fn campaign_list(State(state): State<ApiState>) -> Reply {
    run(&state, AdminOp::FwCampaigns).await
}

async fn campaign_status(State(state): State<ApiState>, Path(campaign): Path<String>) -> Reply {
    run(&state, AdminOp::FwStatus { campaign }).await
}

async fn campaign_cancel(State(state): State<ApiState>, Path(campaign): Path<String>) -> Reply {
    run(&state, AdminOp::FwCancel { campaign }).await
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /api/audit?limit=N`: the newest `N` events (default 50), oldest first.
async fn audit(
    State(state): State<ApiState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit = {limit}: must be 1..={MAX_AUDIT_LIMIT}"
        )));
    }
    run(&state, AdminOp::Audit { limit }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_naming_nothing_are_404_and_conflicts_409() {
        let s = |kind, message: &str| {
            answer(Ok(AdminReply::refused(kind, message)))
                .err()
                .map(|e| e.status)
        };
        let nf = Some(StatusCode::NOT_FOUND);
        assert_eq!(s(Refusal::NotFound, "no package 0123456789abcdef"), nf);
        assert_eq!(s(Refusal::NotFound, "no campaign 7"), nf);
        assert_eq!(s(Refusal::NotFound, "endpoint \"x\" has no credential"), nf);
        assert_eq!(
            s(
                Refusal::NotFound,
                "endpoint \"x\" has no bootstrap credential"
            ),
            nf
        );
        assert_eq!(
            s(
                Refusal::Conflict,
                "package 0123 is used by a campaign: end the campaign first"
            ),
            Some(StatusCode::CONFLICT)
        );
        assert_eq!(
            s(
                Refusal::Conflict,
                "PSK identity \"i\" is already bound to endpoint \"y\"; revoke it there first"
            ),
            Some(StatusCode::CONFLICT)
        );
        assert_eq!(
            answer(Ok(AdminReply::error("the package is empty")))
                .err()
                .map(|e| e.status),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            s(Refusal::Internal, "store: disk full"),
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }
}
