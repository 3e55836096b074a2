use super::*;

#[test]
fn node_of_finds_the_node_and_what_only_it_can_serve() {
    let cases = [
        (
            "/api2/json/nodes/pve2/qemu/104/status/current",
            Some(("pve2", false)),
        ),
        (
            "/api2/json/nodes/pve2/qemu/104/vncproxy",
            Some(("pve2", true)),
        ),
        (
            "/api2/extjs/nodes/pve2/lxc/120/termproxy",
            Some(("pve2", true)),
        ),
        (
            "/api2/json/nodes/pve2/qemu/104/spiceproxy",
            Some(("pve2", true)),
        ),
        (
            "/api2/json/nodes/pve2/qemu/104/vncwebsocket",
            Some(("pve2", true)),
        ),
        (
            "/api2/json/nodes/pve2/qemu/104/mtunnelwebsocket",
            Some(("pve2", true)),
        ),
        ("/api2/json/nodes/pve3/vncwebsocket", Some(("pve3", true))),
        ("/api2/json/nodes/pve3/termproxy", Some(("pve3", true))),
        ("/api2/json/nodes/pve3/vncshell", Some(("pve3", true))),
        (
            "/api2/json/nodes/pve3/storage/local/upload",
            Some(("pve3", true)),
        ),
        (
            "/api2/json/nodes/pve3/storage/local/content",
            Some(("pve3", false)),
        ),
        (
            "/api2/json/nodes/pve3/storage/local/upload/x",
            Some(("pve3", false)),
        ),
        ("/api2/json/nodes/pve3", Some(("pve3", false))),
        ("/api2/json/cluster/resources", None),
        ("/api2/json/nodes", None),
        ("/nodes/pve1/vncshell", None),
        ("/", None),
    ];
    for (path, want) in cases {
        assert_eq!(node_of(path), want, "{path}");
    }
}

fn upstream(port: u16) -> Upstream {
    let cfg = config::Upstream {
        scheme: http::uri::Scheme::HTTP,
        authority: format!("127.0.0.1:{port}").parse().unwrap(),
        trust: config::Trust::SystemRoots,
        connect_timeout: Duration::from_secs(1),
        pool_idle_timeout: Duration::from_millis(1000),
    };
    Upstream::new(&cfg).unwrap()
}

fn three() -> Cluster {
    Cluster::new(vec![
        (Some("pve1".into()), upstream(1)),
        (Some("pve2".into()), upstream(2)),
        (None, upstream(3)),
    ])
}

fn labels(order: Vec<&Node>) -> Vec<&str> {
    order.into_iter().map(Node::label).collect()
}

#[test]
fn order_prefers_the_named_node_then_the_nodes_up_then_the_rest() {
    let c = three();
    assert_eq!(labels(c.order(None)), ["pve1", "pve2", "127.0.0.1:3"]);
    assert_eq!(
        labels(c.order(Some("pve2"))),
        ["pve2", "pve1", "127.0.0.1:3"]
    );
    assert_eq!(
        labels(c.order(Some("pve9"))),
        ["pve1", "pve2", "127.0.0.1:3"]
    );
    c.nodes[0].set(Err("down".into()));
    assert_eq!(labels(c.order(None)), ["pve2", "127.0.0.1:3", "pve1"]);
    assert_eq!(
        labels(c.order(Some("pve1"))),
        ["pve2", "127.0.0.1:3", "pve1"]
    );
    assert_eq!(c.nodes[0].down_reason().as_deref(), Some("down"));
    c.nodes[0].set(Ok(()));
    assert!(c.nodes[0].is_up() && c.nodes[0].down_reason().is_none());
    assert_eq!(c.authority(), "cluster (pve1, pve2, 127.0.0.1:3)");
}

#[test]
fn only_bodies_held_in_memory_are_copied_for_another_node() {
    let req = Request::post("/api2/json/nodes/pve1/qemu/110/status/start")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(bytes::Bytes::from_static(b"timeout=5")))
        .unwrap();
    let copy = retry_copy(&req).expect("a buffered body is copied");
    assert_eq!(copy.method(), Method::POST);
    assert_eq!(copy.uri(), req.uri());
    assert_eq!(copy.headers(), req.headers());
    let ws = Request::get("/api2/json/nodes/pve1/qemu/110/vncwebsocket")
        .header("upgrade", "websocket")
        .body(Body::empty())
        .unwrap();
    assert!(retry_copy(&ws).is_none(), "a websocket is never replayed");
    let streamed = Request::post("/api2/json/nodes/pve1/storage/local/upload")
        .body(Body::new(http_body_util::StreamBody::new(
            futures_util::stream::empty::<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>(),
        )))
        .unwrap();
    assert!(
        retry_copy(&streamed).is_none(),
        "a streamed body is read once"
    );
}
