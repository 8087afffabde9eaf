//! One JSON document by `GET`, over a fresh HTTP/1.1 connection (hyper's client connection):
//! what the live sampler asks each node (`/stats`) and what a lab asks the balancer
//! (`/state`). The caller bounds the time it may take.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// `GET path` from `addr`, parsed as `T`; an error says what went wrong (connect, status, or
/// a document that is not a `T`).
pub async fn get_json<T: DeserializeOwned>(addr: SocketAddr, path: &str) -> Result<T, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a {path} document: {e}"))
}
