//! The control interface's HTTP server (axum over a Unix socket). Every route
//! addresses a key by its bus id; bodies and answers are JSON; an error is a 4xx/5xx
//! with `{"error": "..."}` and changes nothing.
//!
//! Operations on the store or the authenticator run on the key's authenticator thread
//! (serialised with CTAP requests); when a CTAP request waits for the user's touch
//! they answer 503 at once instead of waiting behind it. `GET /v1/keys` is served from
//! the state the key published after its last request, so it never waits. Presence,
//! the UV result and the override bits are shared switches and never wait either.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use zeroize::Zeroizing;

use super::json::{self, unb64};
use crate::ctap::{AnswerError, ImportCredential, ManageError, OverrideBits, PresenceMode};
use crate::key::{Busy, Key};

/// The keys the interface controls.
pub struct ControlState {
    pub keys: Vec<Arc<Key>>,
}

type AppState = Arc<ControlState>;

/// An error answer: status and a message saying what is wrong.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<Busy> for ApiError {
    fn from(b: Busy) -> ApiError {
        let msg = match b {
            Busy::WaitsForUser(p) => format!(
                "a {} request{} waits for the user (touch {}): approve or deny it first (POST …/presence/approve or …/presence/deny)",
                p.command,
                p.rp_id.map(|r| format!(" for {r}")).unwrap_or_default(),
                p.id
            ),
            Busy::Timeout => "the authenticator is busy; try again".into(),
            Busy::Gone => "the authenticator has stopped".into(),
        };
        ApiError(StatusCode::SERVICE_UNAVAILABLE, msg)
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> ApiError {
        let status = match &e {
            ManageError::NotFound => StatusCode::NOT_FOUND,
            ManageError::Duplicate | ManageError::WrongPin => StatusCode::CONFLICT,
            ManageError::Invalid(_) => StatusCode::BAD_REQUEST,
            ManageError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<axum::Json<Value>, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(axum::Json(v))
}

fn key(state: &AppState, bus_id: &str) -> Result<Arc<Key>, ApiError> {
    state
        .keys
        .iter()
        .find(|k| k.shared().bus_id() == bus_id)
        .cloned()
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no key with bus id {bus_id:?}"),
            )
        })
}

/// A JSON body; an empty body reads as `{}` where `T` allows it.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let b: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(b).map_err(|e| bad(format!("bad JSON body: {e}")))
}

pub fn router(state: Arc<ControlState>) -> Router {
    Router::new()
        .route("/v1/keys", get(list_keys))
        .route("/v1/keys/{bus_id}", get(show_key))
        .route(
            "/v1/keys/{bus_id}/credentials",
            get(list_credentials)
                .post(add_credential)
                .delete(clear_credentials),
        )
        .route(
            "/v1/keys/{bus_id}/credentials/{credential_id}",
            get(show_credential).delete(remove_credential),
        )
        .route(
            "/v1/keys/{bus_id}/credentials/{credential_id}/properties",
            post(set_properties),
        )
        .route("/v1/keys/{bus_id}/user-verified", post(user_verified))
        .route("/v1/keys/{bus_id}/presence", post(set_presence))
        .route("/v1/keys/{bus_id}/presence/pending", get(pending))
        .route("/v1/keys/{bus_id}/presence/approve", post(approve))
        .route("/v1/keys/{bus_id}/presence/deny", post(deny))
        .route(
            "/v1/keys/{bus_id}/response-override-bits",
            post(override_bits),
        )
        .route("/v1/keys/{bus_id}/pin", post(set_pin))
        .route("/v1/keys/{bus_id}/reset", post(reset))
        .route("/v1/keys/{bus_id}/replug", post(replug))
        .route("/v1/keys/{bus_id}/events", get(events))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route".into(),
            )
        })
        .with_state(state)
}

fn key_json(k: &Key) -> Value {
    let sh = k.shared();
    let status = sh.status();
    let options: serde_json::Map<String, Value> = status
        .as_ref()
        .map(|s| {
            s.options
                .iter()
                .map(|(n, b)| (n.clone(), Value::Bool(*b)))
                .collect()
        })
        .unwrap_or_default();
    let bits = sh.overrides.get();
    json!({
        "busId": sh.bus_id(),
        "aaguid": status.as_ref().map(|s| json::uuid(&s.aaguid)),
        "options": options,
        "pinSet": status.as_ref().map(|s| s.pin_set),
        "pinRetries": status.as_ref().map(|s| s.pin_retries),
        "uvRetries": status.as_ref().and_then(|s| s.uv_retries),
        "credentials": status.as_ref().map(|s| s.credentials),
        "presence": sh.presence.mode().to_string(),
        "pending": sh.presence.pending().map(|p| pending_json(&p)),
        "isUserVerified": sh.uv.as_ref().map(|u| u.result()),
        "responseOverrideBits": {
            "isBogusSignature": bits.is_bogus_signature,
            "isBadUV": bits.is_bad_uv,
            "isBadUP": bits.is_bad_up,
        },
        "attached": sh.attached(),
    })
}

async fn list_keys(State(s): State<AppState>) -> ApiResult {
    ok(Value::Array(s.keys.iter().map(|k| key_json(k)).collect()))
}

async fn show_key(State(s): State<AppState>, Path(bus_id): Path<String>) -> ApiResult {
    let k = key(&s, &bus_id)?;
    ok(key_json(&k))
}

async fn list_credentials(State(s): State<AppState>, Path(bus_id): Path<String>) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let list = k
        .run(|a| {
            a.list_credentials()
                .iter()
                .map(json::credential)
                .collect::<Vec<_>>()
        })
        .await?;
    ok(Value::Array(list))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpQuery {
    rp_id: Option<String>,
}

async fn show_credential(
    State(s): State<AppState>,
    Path((bus_id, credential_id)): Path<(String, String)>,
    Query(q): Query<RpQuery>,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let id = unb64("credentialId", &credential_id).map_err(bad)?;
    let found = k
        .run(move |a| {
            a.credential(&id, q.rp_id.as_deref())
                .map(|c| json::credential(&c))
        })
        .await?;
    found.map(axum::Json).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "no such credential (a non-discoverable credential is not stored: give ?rpId=RP to open its ID)".into(),
        )
    })
}

async fn add_credential(
    State(s): State<AppState>,
    Path(bus_id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let c: json::CredentialIn = body(&bytes)?;
    if c.large_blob.is_some() {
        // TODO(extensions): import through the store's large-blob API once it exists.
        return Err(bad("largeBlob: this key has no large-blob storage yet"));
    }
    let import = ImportCredential {
        credential_id: unb64("credentialId", &c.credential_id).map_err(bad)?,
        is_resident: c.is_resident_credential,
        rp_id: c.rp_id.clone(),
        private_key: Zeroizing::new(unb64("privateKey", &c.private_key).map_err(bad)?),
        user_handle: c
            .user_handle
            .as_deref()
            .map(|u| unb64("userHandle", u))
            .transpose()
            .map_err(bad)?,
        user_name: c.user_name.clone(),
        user_display_name: c.user_display_name.clone(),
        sign_count: c.sign_count,
        backup_eligibility: c.backup_eligibility,
        backup_state: c.backup_state,
    };
    let added = k
        .run(move |a| a.import_credential(import).map(|c| json::credential(&c)))
        .await??;
    ok(added)
}

async fn remove_credential(
    State(s): State<AppState>,
    Path((bus_id, credential_id)): Path<(String, String)>,
    _: Bytes,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let id = unb64("credentialId", &credential_id).map_err(bad)?;
    k.run(move |a| a.remove_credential(&id)).await??;
    ok(json!({ "deleted": credential_id }))
}

async fn clear_credentials(
    State(s): State<AppState>,
    Path(bus_id): Path<String>,
    _: Bytes,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let n = k.run(|a| a.clear_credentials()).await??;
    ok(json!({ "deleted": n }))
}

async fn set_properties(
    State(s): State<AppState>,
    Path((bus_id, credential_id)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let p: json::PropertiesIn = body(&bytes)?;
    let id = unb64("credentialId", &credential_id).map_err(bad)?;
    let c = k
        .run(move |a| {
            a.set_credential_properties(&id, p.backup_eligibility, p.backup_state)
                .map(|c| json::credential(&c))
        })
        .await??;
    ok(c)
}

async fn user_verified(
    State(s): State<AppState>,
    Path(bus_id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let b: json::UserVerifiedIn = body(&bytes)?;
    let uv = k.shared().uv.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "this key has no built-in user verification (start it with --uv)".into(),
        )
    })?;
    uv.set_result(b.is_user_verified);
    ok(json!({ "isUserVerified": b.is_user_verified }))
}

async fn set_presence(
    State(s): State<AppState>,
    Path(bus_id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let b: json::PresenceIn = body(&bytes)?;
    let mode: PresenceMode = b.mode.parse().map_err(bad)?;
    k.shared().presence.set_mode(mode);
    ok(json!({ "mode": mode.to_string() }))
}

fn pending_json(p: &crate::ctap::PendingTouch) -> Value {
    json!({ "id": p.id, "rpId": p.rp_id, "command": p.command, "userName": p.user_name })
}

async fn pending(State(s): State<AppState>, Path(bus_id): Path<String>) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let list: Vec<Value> = k
        .shared()
        .presence
        .pending()
        .iter()
        .map(pending_json)
        .collect();
    ok(Value::Array(list))
}

async fn answer(s: AppState, bus_id: String, bytes: Bytes, approve: bool) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let b: json::AnswerIn = body(&bytes)?;
    match k.shared().presence.answer(b.id, approve) {
        Ok(id) => ok(json!({ "id": id, "approved": approve })),
        Err(AnswerError::NoneWaiting) => Err(ApiError(
            StatusCode::CONFLICT,
            "no request waits for the user".into(),
        )),
        Err(AnswerError::Stale { asked, waiting }) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("request {asked} no longer waits (request {waiting} does): not answered"),
        )),
    }
}

async fn approve(State(s): State<AppState>, Path(bus_id): Path<String>, bytes: Bytes) -> ApiResult {
    answer(s, bus_id, bytes, true).await
}

async fn deny(State(s): State<AppState>, Path(bus_id): Path<String>, bytes: Bytes) -> ApiResult {
    answer(s, bus_id, bytes, false).await
}

async fn override_bits(
    State(s): State<AppState>,
    Path(bus_id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let b: json::OverrideBitsIn = body(&bytes)?;
    k.shared().overrides.set(OverrideBits {
        is_bogus_signature: b.is_bogus_signature,
        is_bad_uv: b.is_bad_uv,
        is_bad_up: b.is_bad_up,
    });
    ok(json!({
        "isBogusSignature": b.is_bogus_signature,
        "isBadUV": b.is_bad_uv,
        "isBadUP": b.is_bad_up,
    }))
}

async fn set_pin(State(s): State<AppState>, Path(bus_id): Path<String>, bytes: Bytes) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let b: json::PinIn = body(&bytes)?;
    let pin = Zeroizing::new(b.pin.as_bytes().to_vec());
    let current = b
        .current_pin
        .as_ref()
        .map(|c| Zeroizing::new(c.as_bytes().to_vec()));
    drop(b);
    k.run(move |a| a.set_pin(&pin, current.as_ref().map(|c| c.as_slice())))
        .await??;
    ok(json!({ "pinSet": true }))
}

// The body is read (and ignored) so that the connection ends cleanly.
async fn reset(State(s): State<AppState>, Path(bus_id): Path<String>, _: Bytes) -> ApiResult {
    let k = key(&s, &bus_id)?;
    k.run(|a| a.factory_reset()).await??;
    ok(json!({ "reset": true }))
}

async fn replug(State(s): State<AppState>, Path(bus_id): Path<String>, _: Bytes) -> ApiResult {
    let k = key(&s, &bus_id)?;
    let was_attached = k.replug();
    ok(json!({ "replugged": true, "wasAttached": was_attached }))
}

async fn events(
    State(s): State<AppState>,
    Path(bus_id): Path<String>,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let k = key(&s, &bus_id)?;
    let stream = BroadcastStream::new(k.shared().subscribe()).map(|item| {
        Ok(match item {
            Ok(e) => {
                let (name, body) = json::event(&e);
                SseEvent::default().event(name).data(body.to_string())
            }
            // A slow subscriber lost events; it is told, the key never waits for it.
            Err(BroadcastStreamRecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(json!({ "type": "lagged", "missed": n }).to_string()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Serves the control interface on `listener` until the process ends.
pub async fn serve(listener: tokio::net::UnixListener, state: Arc<ControlState>) {
    if let Err(e) = axum::serve(listener, router(state)).await {
        tracing::error!("control interface stopped: {e}");
    }
}
