//! Guest addresses as the sim reports them: the guest agent's `network-get-interfaces` and
//! LXC's `GET …/lxc/{vmid}/interfaces`. A guest with a static address in its config
//! (`ipconfig0: ip=A/P` for QEMU cloud-init, `net0: …,ip=A/P` for LXC) reports that address,
//! as a booted guest would; otherwise a fixed one derived from the VMID.

use serde_json::{json, Value};

use super::reply::ApiError;
use super::state::{guest_ip, Guest, State};
use super::GuestKind;

/// The guest's IPv4 address and prefix length.
pub(crate) fn address_of(g: &Guest) -> (String, u8) {
    let key = match g.kind {
        GuestKind::Qemu => "ipconfig0",
        GuestKind::Lxc => "net0",
    };
    let configured = g.config.get(key).and_then(|v| {
        v.split(',')
            .find_map(|p| p.strip_prefix("ip="))
            .and_then(|cidr| {
                let (a, p) = cidr.split_once('/')?;
                a.parse::<std::net::Ipv4Addr>().ok()?;
                Some((a.to_owned(), p.parse().ok()?))
            })
    });
    configured.unwrap_or_else(|| (guest_ip(g.vmid), 24))
}

/// `GET /nodes/{node}/lxc/{vmid}/interfaces`: `[{name, hwaddr, inet, inet6}]` of a running
/// container.
pub(crate) fn lxc_interfaces(st: &State, vmid: u32) -> Result<Value, ApiError> {
    let g = st.guest(GuestKind::Lxc, vmid)?;
    if !g.running {
        return Err(ApiError::die(format!("CT {vmid} not running")));
    }
    let (addr, prefix) = address_of(g);
    let hwaddr = g
        .config
        .get("net0")
        .and_then(|v| v.split(',').find_map(|p| p.strip_prefix("hwaddr=")))
        .unwrap_or("BC:24:11:00:00:00")
        .to_ascii_lowercase();
    Ok(json!([
        {"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"},
        {"name": "eth0", "hwaddr": hwaddr, "inet": format!("{addr}/{prefix}"),
         "inet6": format!("fe80::be24:11ff:fe00:{:x}/64", vmid & 0xffff)},
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    #[test]
    fn configured_addresses_win_and_stopped_containers_have_none() {
        let mut st = State::new(&SimConfig::demo());
        let vm = st.guest(GuestKind::Qemu, 110).unwrap();
        assert_eq!(address_of(vm), ("10.0.0.110".to_owned(), 24));
        let mut p = crate::params::Params::new();
        p.insert(
            "ipconfig0".into(),
            Some("ip=192.168.5.7/16,gw=192.168.0.1".into()),
        );
        st.set_config(GuestKind::Qemu, 110, &p).unwrap();
        let vm = st.guest(GuestKind::Qemu, 110).unwrap();
        assert_eq!(address_of(vm), ("192.168.5.7".to_owned(), 16));
        // `ip=dhcp` is not an address: the derived one stays.
        let ct = st.guest(GuestKind::Lxc, 120).unwrap();
        assert_eq!(address_of(ct).0, "10.0.0.120");

        let e = lxc_interfaces(&st, 120).unwrap_err();
        assert_eq!(e.message, "CT 120 not running\n");
        st.power(GuestKind::Lxc, 120, "start", "root@pam").unwrap();
        let v = lxc_interfaces(&st, 120).unwrap();
        assert_eq!(v[1]["inet"], "10.0.0.120/24");
        assert!(lxc_interfaces(&st, 110).is_err(), "110 is a VM");
    }
}
