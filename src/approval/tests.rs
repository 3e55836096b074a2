//! Unit tests of the approval state: signing, grants used once, self-approval, two
//! approvers, tampering, expiry, waivers.

use std::time::Duration;

use super::record::Key;
use super::settings::Settings;
use super::store::{Ask, Gate, Status, Store};
use super::waiver::WaiverCache;
use super::StateError;
use crate::pve::{Action, GuestSet, Operation, Route};

fn store(dir: &std::path::Path) -> Store {
    let settings = Settings {
        dir: dir.to_path_buf(),
        key_file: dir.join("unused.key"),
        ..Settings::default()
    };
    Store::with_key(
        &settings,
        Key::from_bytes(b"0123456789abcdef0123456789abcdef"),
    )
}

fn ask(digest: &str, approvers: u8) -> Ask<'static> {
    Ask {
        identity: Some("tofu@pve!ci"),
        method: "POST",
        path: "/api2/json/nodes/pve/qemu/104/status/stop",
        action: "power.stop",
        guests: "104",
        digest: digest.to_string(),
        rule: "guest 104 (t.toml:2) approve power.stop",
        approvers,
    }
}

fn waiting(g: Gate) -> (String, bool) {
    match g {
        Gate::Waiting(r, new) => (r.id, new),
        other => panic!("expected waiting, got {other:?}"),
    }
}

#[test]
fn a_grant_passes_once_then_a_new_request_waits() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (id, new) = waiting(s.gate(&ask("d1", 1)).unwrap());
    assert!(new && id.starts_with("ap-"));
    // Asking again reuses the pending id.
    assert_eq!(waiting(s.gate(&ask("d1", 1)).unwrap()), (id.clone(), false));
    // Another digest (a changed parameter) is another request.
    let (other, _) = waiting(s.gate(&ask("d2", 1)).unwrap());
    assert_ne!(other, id);
    // Self-approval: the same user, with or without a token.
    for me in ["tofu@pve!ci", "tofu@pve", "tofu@pve!other"] {
        let e = s.decide(&id, me, true, None).unwrap_err();
        assert!(e.to_string().contains("self-approval"), "{e}");
    }
    let (_, st) = s.decide(&id, "alice@pam", true, None).unwrap();
    assert!(matches!(st, Status::Approved { .. }), "{st:?}");
    assert!(matches!(s.gate(&ask("d1", 1)).unwrap(), Gate::Granted(ref r, _) if r.id == id));
    // Used: the same request waits under a new id.
    let (again, new) = waiting(s.gate(&ask("d1", 1)).unwrap());
    assert!(new && again != id);
    assert_eq!(
        s.status(&s.request(&id).unwrap().unwrap()).unwrap(),
        Status::Used
    );
    // A used grant cannot be approved again.
    assert!(s.decide(&id, "bob@pam", true, None).is_err());
}

#[test]
fn two_approvers_must_be_distinct_people() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (id, _) = waiting(s.gate(&ask("d", 2)).unwrap());
    let (_, st) = s.decide(&id, "alice@pam", true, None).unwrap();
    assert!(matches!(st, Status::Pending { ref approved_by } if approved_by.len() == 1));
    assert!(matches!(
        s.gate(&ask("d", 2)).unwrap(),
        Gate::Waiting(_, false)
    ));
    // alice again, even with a token, does not count twice.
    assert!(s.decide(&id, "alice@pam!t", true, None).is_err());
    let (_, st) = s.decide(&id, "bob@pve", true, None).unwrap();
    assert!(matches!(st, Status::Approved { ref by, .. } if by.len() == 2));
    assert!(matches!(s.gate(&ask("d", 2)).unwrap(), Gate::Granted(..)));
}

#[test]
fn rejected_and_tampered_records_never_grant() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (id, _) = waiting(s.gate(&ask("r", 1)).unwrap());
    s.decide(&id, "alice@pam", false, Some("not now")).unwrap();
    assert!(s.decide(&id, "bob@pam", true, None).is_err());
    assert!(matches!(
        s.gate(&ask("r", 1)).unwrap(),
        Gate::Waiting(_, true)
    ));

    // Widen a request: change its digest in the file. The signature fails.
    let (id, _) = waiting(s.gate(&ask("t", 1)).unwrap());
    let f = dir.path().join(format!("{id}.request.json"));
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replace("\"t\"", "\"u\"")).unwrap();
    assert!(matches!(
        s.decide(&id, "alice@pam", true, None),
        Err(StateError::Refused(_))
    ));
    // A forged approval (signed with another key) does not count.
    let (id, _) = waiting(s.gate(&ask("f", 1)).unwrap());
    let other = store(dir.path());
    let forger = Store::with_key(
        &other.settings,
        Key::from_bytes(b"another key, another key, another"),
    );
    assert!(forger.decide(&id, "mallory@pam", true, None).is_err());
    // Copy a real approval of one request onto another: the digest binds it.
    let (a, _) = waiting(s.gate(&ask("a", 1)).unwrap());
    let (b, _) = waiting(s.gate(&ask("b", 1)).unwrap());
    s.decide(&a, "alice@pam", true, None).unwrap();
    let name = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with(&format!("{a}.approved.")))
        .unwrap();
    std::fs::copy(
        dir.path().join(&name),
        dir.path().join(name.replace(&a, &b)),
    )
    .unwrap();
    assert!(matches!(s.gate(&ask("b", 1)).unwrap(), Gate::Waiting(ref r, false) if r.id == b));
    // Deleting the used marker does not make a grant usable again in this process.
    assert!(matches!(s.gate(&ask("a", 1)).unwrap(), Gate::Granted(..)));
    std::fs::remove_file(dir.path().join(format!("{a}.used"))).unwrap();
    assert!(matches!(
        s.gate(&ask("a", 1)).unwrap(),
        Gate::Waiting(_, true)
    ));
    // Ids are checked before they become file names.
    assert!(s.request("../../etc/passwd").is_err());
}

#[test]
fn unanswered_requests_expire_and_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    s.settings.pending_ttl = Duration::from_secs(1);
    let (id, _) = waiting(s.gate(&ask("e", 1)).unwrap());
    std::thread::sleep(Duration::from_millis(2100));
    let e = s.decide(&id, "alice@pam", true, None).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    let swept = s.sweep().unwrap();
    assert_eq!(swept.len(), 1);
    assert!(s.sweep().unwrap().is_empty());
    // Still refused: a new request waits.
    assert!(matches!(s.gate(&ask("e", 1)).unwrap(), Gate::Waiting(ref r, true) if r.id != id));
}

#[test]
fn waivers_cover_their_scope_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let cache = WaiverCache::default();
    let op =
        |a: Action, g: &[u32]| Operation::new(Route::Known("/x"), a, GuestSet::Some(g.to_vec()));
    let w = s
        .waive(
            Some(104),
            None,
            "power.*",
            Duration::from_secs(3600),
            "maintenance",
            "alice@pam",
        )
        .unwrap();
    let found =
        |o: &Operation, id: Option<&str>| s.waiver_for(&cache, o, id).unwrap().map(|w| w.record.id);
    assert_eq!(
        found(&op(Action::PowerStop, &[104]), None),
        Some(w.record.id.clone())
    );
    assert_eq!(found(&op(Action::Destroy, &[104]), None), None);
    assert_eq!(found(&op(Action::PowerStop, &[104, 105]), None), None);
    assert_eq!(
        found(
            &Operation::new(Route::Known("/x"), Action::PowerStop, GuestSet::All),
            None
        ),
        None
    );
    let by_id = s
        .waive(
            None,
            Some("ci@pve!*"),
            "destroy",
            Duration::from_secs(60),
            "cleanup",
            "alice@pam",
        )
        .unwrap();
    assert_eq!(
        found(&op(Action::Destroy, &[300]), Some("ci@pve!tf")),
        Some(by_id.record.id.clone())
    );
    assert_eq!(found(&op(Action::Destroy, &[300]), Some("other@pve")), None);
    s.revoke(&w.record.id, "alice@pam").unwrap();
    assert_eq!(found(&op(Action::PowerStop, &[104]), None), None);
    assert!(s.revoke(&w.record.id, "alice@pam").is_err());
    // Bad input is refused.
    assert!(s
        .waive(None, None, "power.*", Duration::from_secs(60), "x", "a@pam")
        .is_err());
    assert!(s
        .waive(Some(1), None, "read", Duration::from_secs(60), "x", "a@pam")
        .is_err());
    assert!(s
        .waive(
            Some(1),
            None,
            "power.*",
            Duration::from_secs(8 * 86400),
            "x",
            "a@pam"
        )
        .is_err());
    // A tampered waiver does not apply.
    let t = s
        .waive(
            Some(110),
            None,
            "power.stop",
            Duration::from_secs(60),
            "x",
            "a@pam",
        )
        .unwrap();
    let f = s
        .settings
        .waiver_dir()
        .join(format!("{}.json", t.record.id));
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replace("power.stop", "*")).unwrap();
    let fresh = WaiverCache::default();
    assert!(s
        .waiver_for(&fresh, &op(Action::Destroy, &[110]), None)
        .unwrap()
        .is_none());
}

#[test]
fn digest_is_canonical_and_sensitive() {
    use crate::pve::request::{ParamValue, Params};
    let p = |pairs: &[(&str, &str)]| {
        let mut m = Params::default();
        for (k, v) in pairs {
            m.map.insert(k.to_string(), ParamValue::One(v.to_string()));
        }
        m
    };
    let d =
        |id: Option<&str>, params: &Params| super::gate::digest(id, "PUT", "/api2/json/x", params);
    let a = d(Some("u@pve"), &p(&[("memory", "2048"), ("cores", "2")]));
    assert_eq!(
        a,
        d(Some("u@pve"), &p(&[("cores", "2"), ("memory", "2048")]))
    );
    assert_ne!(
        a,
        d(Some("u@pve"), &p(&[("cores", "2"), ("memory", "4096")]))
    );
    assert_ne!(
        a,
        d(Some("v@pve"), &p(&[("cores", "2"), ("memory", "2048")]))
    );
    assert_ne!(
        a,
        d(
            Some("u@pve"),
            &p(&[("cores", "2"), ("memory", "2048"), ("x", "")])
        )
    );
}

#[test]
fn one_identity_cannot_fill_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..super::store::MAX_PENDING_PER_IDENTITY {
        waiting(s.gate(&ask(&format!("d{i}"), 1)).unwrap());
    }
    assert!(matches!(s.gate(&ask("one more", 1)).unwrap(), Gate::Full));
    // Someone else still gets an id.
    let mut other = ask("other", 1);
    other.identity = Some("alice@pve!ci");
    assert!(matches!(s.gate(&other).unwrap(), Gate::Waiting(_, true)));
}
