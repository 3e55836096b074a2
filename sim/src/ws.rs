//! Console websockets: the upgrade handshake as pveproxy checks it, then an echo server.
//!
//! pveproxy upgrades only a `GET` whose path ends in `websocket`, with `Upgrade: websocket`,
//! `Sec-WebSocket-Version: 13` and a key; it picks `binary` (else `base64`) from the offered
//! sub-protocols. The sim is lenient about the protocol: none offered means none echoed,
//! anything else offered is echoed as is. After the `101`, every text and binary frame is
//! sent back untouched; there is no idle timeout.

use futures_util::{SinkExt, StreamExt};
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::reply::{full, raw_error, Body};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request asks for a websocket upgrade at all.
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
}

/// The sub-protocol to answer with, from the offered list.
fn pick_protocol(offered: Option<&str>) -> Option<String> {
    let list: Vec<&str> = offered?
        .split([',', ' ', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if list.contains(&"binary") {
        Some("binary".into())
    } else if list.contains(&"base64") {
        Some("base64".into())
    } else {
        list.first().map(|p| (*p).to_owned())
    }
}

/// Validates the handshake; on success answers `101` and spawns the echo on `on_upgrade`.
pub(crate) fn accept(
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let upgrade = header(headers, "upgrade")
        .unwrap_or("")
        .to_ascii_lowercase();
    if upgrade != "websocket" {
        return raw_error(501, &format!("unable to upgrade to protocol '{upgrade}'"));
    }
    let version = header(headers, "sec-websocket-version").unwrap_or("");
    if version != "13" {
        return raw_error(501, &format!("unsupported websocket-version '{version}'"));
    }
    let Some(key) = header(headers, "sec-websocket-key").filter(|k| !k.is_empty()) else {
        return raw_error(501, "missing websocket-key");
    };
    let Some(on_upgrade) = on_upgrade else {
        return raw_error(501, "unable to upgrade the connection");
    };
    let accept = derive_accept_key(key.as_bytes());
    let protocol = pick_protocol(header(headers, "sec-websocket-protocol"));

    tokio::spawn(echo(on_upgrade, shutdown));

    let mut resp = Response::new(full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert("sec-websocket-protocol", p);
    }
    resp
}

async fn echo(on_upgrade: OnUpgrade, mut shutdown: watch::Receiver<bool>) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                // Pings are answered and closes acknowledged by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_choice() {
        assert_eq!(pick_protocol(Some("base64, binary")), Some("binary".into()));
        assert_eq!(pick_protocol(Some("base64")), Some("base64".into()));
        assert_eq!(pick_protocol(Some("chat")), Some("chat".into()));
        assert_eq!(pick_protocol(None), None);
    }
}
