//! Idle plain-TCP client connections are parked outside hyper (see `src/server.rs`) and
//! come back transparently: requests after a park, a request head split across a park,
//! pipelined requests after a park and a websocket opened on a parked connection all work.

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Longer than the park threshold (100 to 200 ms of nothing happening).
const PARKED: Duration = Duration::from_millis(1000);

const STATUS: &str = "/api2/json/nodes/pve/status";

/// Reads one response (Content-Length or chunked) off a keep-alive connection; `buf` keeps
/// what was read beyond it.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> RawResponse {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap());
            let total = match len {
                Some(n) => (buf.len() >= end + 4 + n).then_some(end + 4 + n),
                None if head.contains("transfer-encoding: chunked") => buf[end + 4..]
                    .windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .map(|p| end + 4 + p + 5),
                None => Some(end + 4),
            };
            if let Some(total) = total {
                let r = parse_response(&buf[..total]);
                buf.drain(..total);
                return r;
            }
        }
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before a whole response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_survives_parking() {
    let g = start().await;
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let mut buf = Vec::new();

    s.write_all(get(STATUS).as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert_eq!(r.header("connection"), None);

    // Parked, then used again.
    tokio::time::sleep(PARKED).await;
    s.write_all(get(STATUS).as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert_eq!(r.header("connection"), None);

    // A request head split across a park.
    tokio::time::sleep(PARKED).await;
    let req = get(STATUS);
    let (first, second) = req.split_at(20);
    s.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(PARKED).await;
    s.write_all(second.as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);

    // Two pipelined requests after a park: both answered, once each.
    tokio::time::sleep(PARKED).await;
    let two = format!("{}{}", get(STATUS), get(STATUS));
    s.write_all(two.as_bytes()).await.unwrap();
    let a = read_response(&mut s, &mut buf).await;
    let b = read_response(&mut s, &mut buf).await;
    assert_eq!(a.status, 200, "{} {}", a.status, a.reason);
    assert_eq!(b.status, 200, "{} {}", b.status, b.reason);
    assert!(String::from_utf8_lossy(&b.body).contains("version"));

    // Nothing more arrives, and the connection is still open.
    tokio::time::sleep(PARKED).await;
    assert!(buf.is_empty());
    s.write_all(get(STATUS).as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let mut rest = [0u8; 64];
    let more = tokio::time::timeout(Duration::from_millis(300), s.read(&mut rest)).await;
    assert!(more.is_err(), "nothing but the answers: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_on_a_parked_connection() {
    let g = start().await;
    let (port, ticket) = vnc_console(g.addr, 110).await;

    // One plain request, then a park, then the upgrade on the same connection.
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(get(STATUS).as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    tokio::time::sleep(PARKED).await;

    let mut req = vnc_websocket_request(g.addr, 110, &port, &ticket);
    req.headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, s).await.unwrap();
    assert_eq!(resp.status(), 101);
    let every_byte: Vec<u8> = (0..=255u8).collect();
    for m in [
        Message::Binary(every_byte.clone().into()),
        Message::Text("RFB 003.008\n".into()),
    ] {
        ws.send(m.clone()).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("echo in time")
            .unwrap()
            .unwrap();
        assert_eq!(echo, m);
    }
    // Quiet for longer than the park threshold: a tunnel is never parked.
    tokio::time::sleep(PARKED).await;
    let last = Message::Binary(every_byte.into());
    ws.send(last.clone()).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo after a pause")
        .unwrap()
        .unwrap();
    assert_eq!(echo, last);
    ws.close(None).await.unwrap();
}
