//! Tests of the catalogue's router and its generated data.

use super::*;

fn segs(path: &str) -> Vec<crate::pve::Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(crate::pve::Segment::new)
        .collect()
}

fn found(m: ApiMethod, path: &str) -> Match<'static> {
    let s: &'static [crate::pve::Segment] = Box::leak(segs(path).into_boxed_slice());
    match resolve(m, s) {
        Resolution::Found(x) => x,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn data_parses_and_is_complete() {
    let cat = Catalogue::parse(DATA).unwrap();
    assert_eq!(cat.endpoints.len(), 650);
    assert!(cat.sources.iter().any(|s| s.pve == "9.1"));
    assert!(cat.sources.iter().any(|s| s.pve == "8.4"));
    for e in &cat.endpoints {
        if e.all_guests_when_omitted {
            assert_ne!(
                e.all_guests,
                AllGuests::Never,
                "{} {}",
                e.method.as_str(),
                e.path
            );
        }
    }
}

#[test]
fn routes_fixed_and_params() {
    let m = found(ApiMethod::Post, "/nodes/pve/qemu/104/status/stop");
    assert_eq!(m.template, "/nodes/{node}/qemu/{vmid}/status/stop");
    assert_eq!(m.params.get("node"), Some("pve"));
    assert_eq!(m.params.get("vmid"), Some("104"));
    assert_eq!(m.params.len(), 2);
    // Empty segments are ignored.
    let s: Vec<crate::pve::Segment> = vec!["".into(), "version".into(), "".into()];
    assert!(matches!(resolve(ApiMethod::Get, &s), Resolution::Found(_)));
}

#[test]
fn rest_of_path() {
    let m = found(
        ApiMethod::Delete,
        "/nodes/pve/storage/local/content/local:104/vm-104-disk-0.qcow2",
    );
    assert_eq!(
        m.template,
        "/nodes/{node}/storage/{storage}/content/{volume}"
    );
    assert_eq!(
        m.params.get("volume"),
        Some("local:104/vm-104-disk-0.qcow2")
    );
    let m = found(ApiMethod::Get, "/cluster/firewall/ipset/set1/10.0.0.0/24");
    assert_eq!(m.params.get("cidr"), Some("10.0.0.0/24"));
    let m = found(
        ApiMethod::Put,
        "/nodes/n/qemu/104/firewall/ipset/s/fd00::/64",
    );
    assert_eq!(m.params.get("cidr"), Some("fd00::/64"));
    // `..` is literal inside a rest-of-path value too.
    let m = found(ApiMethod::Get, "/nodes/n/storage/s/content/a/../b");
    assert_eq!(m.params.get("volume"), Some("a/../b"));
    // The collection itself still routes.
    let m = found(ApiMethod::Get, "/nodes/n/storage/s/content");
    assert_eq!(m.template, "/nodes/{node}/storage/{storage}/content");
}

#[test]
fn case_sensitive_and_dotdot_literal() {
    assert!(matches!(
        resolve(ApiMethod::Get, &segs("/Nodes/pve/qemu")),
        Resolution::NotFound
    ));
    assert!(matches!(
        resolve(ApiMethod::Get, &segs("/nodes/pve/QEMU")),
        Resolution::NotFound
    ));
    // `..` is never resolved: in a fixed position it does not route...
    assert!(matches!(
        resolve(
            ApiMethod::Post,
            &segs("/nodes/pve/qemu/104/../110/status/stop")
        ),
        Resolution::NotFound
    ));
    // ...and in a parameter position it is the value.
    let m = found(ApiMethod::Get, "/nodes/../qemu");
    assert_eq!(m.params.get("node"), Some(".."));
}

#[test]
fn other_methods_and_invalid_segments() {
    match resolve(ApiMethod::Delete, &segs("/nodes/pve/qemu/104/status/stop")) {
        Resolution::OtherMethods(s) => {
            assert!(s.contains(ApiMethod::Post) && !s.contains(ApiMethod::Get))
        }
        other => panic!("{other:?}"),
    }
    let s = vec![
        "nodes".into(),
        "pve".into(),
        "qemu".into(),
        "104 ".into(),
        "config".into(),
    ];
    assert!(matches!(
        resolve(ApiMethod::Get, &s),
        Resolution::InvalidSegment("vmid")
    ));
    let s = vec!["nodes".into(), "p\u{a0}ve".into()];
    assert!(matches!(
        resolve(ApiMethod::Get, &s),
        Resolution::InvalidSegment("node")
    ));
    assert!(lookup(&http::Method::PATCH, &segs("/version")).is_none());
    assert!(lookup(&http::Method::GET, &segs("/version")).is_some());
    let ms = methods_for(&segs("/nodes/pve/qemu/104/config"));
    assert!(ms.contains(ApiMethod::Get) && ms.contains(ApiMethod::Put));
    assert!(!ms.contains(ApiMethod::Delete));
    assert!(methods_for(&segs("/nope")).is_empty());
}

#[test]
fn guest_params_precomputed() {
    let e = find(ApiMethod::Put, "/nodes/{node}/qemu/{vmid}/config").unwrap();
    let kinds: Vec<(&str, GuestKind)> = e
        .guest_params
        .iter()
        .map(|g| (e.params[g.index].name.as_str(), g.kind))
        .collect();
    assert!(kinds.contains(&("vmid", GuestKind::Vmid)));
    assert!(kinds.contains(&("scsi[n]", GuestKind::PropertyString)));
    assert!(kinds.contains(&("cdrom", GuestKind::PropertyString)));
    let p = e.param("scsi[n]").unwrap();
    assert!(p.matches_key("scsi12") && !p.matches_key("scsi") && !p.matches_key("scsihw"));
}
