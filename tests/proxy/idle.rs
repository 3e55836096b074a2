//! Idle plain-TCP client connections are parked (holding only their socket, see
//! `src/server.rs`) and come back transparently: requests after a park, a request head split
//! across a park, pipelined requests after a park and a websocket opened on a parked
//! connection all work; and requests pvegate's fast path reads and requests it leaves to hyper
//! take turns on one connection.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_and_hyper_take_turns_on_one_connection() {
    // Requests pvegate reads itself (src/fast.rs) and requests it leaves to hyper (a body
    // announced with Expect, a head arriving in pieces, HTTP/1.0) on one keep-alive
    // connection, pipelined or not: each is answered once, in order, and only the allowed
    // ones reach Proxmox, byte for byte.
    let g = start().await;
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let mut buf = Vec::new();
    let config = "/api2/json/nodes/pve/qemu/110/config";
    let denied = "/api2/json/nodes/pve/qemu/104/config";

    s.write_all(get(STATUS).as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert!(r.header("date").is_some());
    assert_eq!(g.sim.recorder.len(), 1);

    // Pipelined in one write, read by the fast path: allowed, denied, allowed.
    let three = format!(
        "{}{}{}",
        get(STATUS),
        form("PUT", denied, "description=no"),
        form("PUT", config, "description=after")
    );
    s.write_all(three.as_bytes()).await.unwrap();
    let answers = [
        read_response(&mut s, &mut buf).await,
        read_response(&mut s, &mut buf).await,
        read_response(&mut s, &mut buf).await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 403, 200]);
    let reached: Vec<String> = g.sim.recorder.requests()[1..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(reached, [format!("GET {STATUS}"), format!("PUT {config}")]);
    assert_eq!(
        g.sim.recorder.last().unwrap().body_text(),
        "description=after"
    );

    // Expect: 100-continue is hyper's: the interim answer, then the real one. hyper keeps the
    // connection until it has been idle a while; the rest goes to hyper too.
    let put = form("PUT", config, "description=turns")
        .replace("Content-Length", "Expect: 100-continue\r\nContent-Length");
    let (head, body) = put.split_at(put.find("\r\n\r\n").unwrap() + 4);
    s.write_all(head.as_bytes()).await.unwrap();
    let interim = read_response(&mut s, &mut buf).await;
    assert_eq!(interim.status, 100);
    s.write_all(body.as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    let rec = g.sim.recorder.last().unwrap();
    assert_eq!(
        (rec.method.as_str(), rec.body_text()),
        ("PUT", "description=turns".into())
    );

    // A head in two writes.
    let req = get(STATUS);
    let (first, second) = req.split_at(25);
    s.write_all(first.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    s.write_all(second.as_bytes()).await.unwrap();
    let r = read_response(&mut s, &mut buf).await;
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);

    // On a new connection (the fast path's): a HEAD (refused: pveproxy answers it 501) is
    // answered with the length of the message and no body; Connection: close ends the
    // connection after its answer, which says so.
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let mut buf = Vec::new();
    let head_req = get(STATUS).replacen("GET", "HEAD", 1);
    let last = get(STATUS).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    s.write_all(format!("{head_req}{last}").as_bytes())
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("closed after the last answer")
        .unwrap();
    buf.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    let head_answer = parse_response(&buf[..head_end]);
    assert_eq!(head_answer.status, 501, "{}", head_answer.reason);
    assert_ne!(head_answer.header("content-length"), Some("0"));
    assert!(head_answer.header("content-length").is_some());
    let r = parse_response(&buf[head_end..]);
    assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(String::from_utf8_lossy(&r.body).contains("version"));
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        2,
        "two answers, then the end"
    );
}
