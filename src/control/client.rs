//! The CLI's side of the control interface: HTTP/1.1 over the Unix socket with hyper.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A connection to a running vkey's control socket.
pub struct Client {
    socket: PathBuf,
}

/// An answer that is not a success: its status and the server's `error` message.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct ApiFailure {
    pub status: u16,
    pub message: String,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| {
                format!(
                    "cannot reach vkey's control socket {} (is `vkey serve` running? give --control PATH or VKEY_CONTROL)",
                    self.socket.display()
                )
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("control socket handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "vkey")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .context("building the request")?;
        sender.send_request(req).await.context("control request")
    }

    /// One request; the JSON answer, or the server's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error message")
                .to_string();
            return Err(ApiFailure {
                status: status.as_u16(),
                message,
            }
            .into());
        }
        Ok(v)
    }

    /// Follows a Server-Sent Events route: calls `each(event, data)` until the stream
    /// ends or `each` returns false.
    pub async fn follow(
        &self,
        path: &str,
        mut each: impl FnMut(&str, &str) -> bool,
    ) -> anyhow::Result<()> {
        let resp = self.send(Method::GET, path, None).await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            bail!(
                "{} (HTTP {status})",
                v.get("error").and_then(Value::as_str).unwrap_or("error")
            );
        }
        let mut body = resp.into_body();
        let mut buf = String::new();
        let (mut event, mut data) = (String::new(), String::new());
        while let Some(frame) = body.frame().await {
            let frame = frame.context("event stream")?;
            let Some(chunk) = frame.data_ref() else {
                continue;
            };
            buf.push_str(&String::from_utf8_lossy(chunk));
            while let Some(nl) = buf.find('\n') {
                let line: String = buf.drain(..=nl).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() && !each(&event, &data) {
                        return Ok(());
                    }
                    event.clear();
                    data.clear();
                } else if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
        }
        Ok(())
    }
}
