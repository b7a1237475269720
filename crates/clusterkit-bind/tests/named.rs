//! A real `named`, started as the demo and the DNS tests start it.

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use clusterkit_bind::{Named, Setup};
use clusterkit_testkit::{TempDir, require_tool};

fn setup<'a>(named: &'a Path, tsig_keygen: &'a Path, dir: &'a TempDir) -> Setup<'a> {
    Setup {
        named,
        tsig_keygen,
        dir: dir.path(),
        zone: "bind-crate.test",
        key_name: "bind-crate-key",
        patience: Duration::from_secs(60),
    }
}

#[test]
fn named_runs_on_a_loopback_port_with_a_fresh_key() {
    let named = require_tool("named", "bind9");
    let tsig_keygen = require_tool("tsig-keygen", "bind9");
    let dir = TempDir::new("bind-crate");
    let running = Named::start(&setup(&named, &tsig_keygen, &dir)).unwrap();
    assert!(running.addr().ip().is_loopback());
    assert!(!running.secret().is_empty());
    assert!(running.log().contains("running"), "{}", running.log());
    let conf = std::fs::read_to_string(dir.path().join("named.conf")).unwrap();
    assert!(conf.contains("zone \"bind-crate.test\""), "{conf}");
    assert!(conf.contains("key bind-crate-key;"), "{conf}");
    // Its port is taken while it runs, and free once it is dropped.
    let addr = running.addr();
    assert!(UdpSocket::bind(addr).is_err());
    drop(running);
    UdpSocket::bind(addr).expect("the port is free after drop");
}

#[test]
fn a_missing_program_is_an_error_naming_it() {
    let named = require_tool("named", "bind9");
    let dir = TempDir::new("bind-crate-missing");
    let missing = dir.path().join("no-tsig-keygen");
    let err = Named::start(&setup(&named, &missing, &dir)).unwrap_err();
    assert!(err.contains("no-tsig-keygen"), "{err}");
}
