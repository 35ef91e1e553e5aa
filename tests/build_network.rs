//! RUN's network: by default a step has its own network namespace whose traffic leaves
//! through slirp4netns, so it reaches the outside world but not the host's loopback
//! services; `--network host` shares the host's namespace.
//!
//! The outside world is a network namespace made here (`ip netns add` and a veth pair on a
//! private /30) with a listener in it: no address outside this machine is contacted.

mod util;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use util::{image_rootfs, require_tool, run, TestEnv};

/// Answers every connection with an HTTP 200 carrying `body`, until the process ends.
fn serve(listener: TcpListener, body: &'static str) {
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// A network namespace joined to the host by a veth pair: host side `.1`, namespace side
/// `.2` of a private /30. Removed on drop (the veth goes with the namespace).
struct OutsideWorld {
    name: String,
    address: String,
}

impl OutsideWorld {
    fn new() -> OutsideWorld {
        require_tool("ip", "iproute2");
        let id = std::process::id();
        let name = format!("strata-net-{id}");
        let subnet = format!("10.213.{}", id % 250);
        let (host_if, ns_if) = (format!("sh{id}"), format!("so{id}"));
        let ip = |args: &str| {
            run(Command::new("ip").args(args.split(' ')));
        };
        ip(&format!("netns add {name}"));
        let world = OutsideWorld {
            name: name.clone(),
            address: format!("{subnet}.2"),
        };
        ip(&format!("link add {host_if} type veth peer name {ns_if}"));
        ip(&format!("link set {ns_if} netns {name}"));
        ip(&format!("addr add {subnet}.1/30 dev {host_if}"));
        ip(&format!("link set {host_if} up"));
        ip(&format!("-n {name} addr add {subnet}.2/30 dev {ns_if}"));
        ip(&format!("-n {name} link set {ns_if} up"));
        world
    }

    /// A listener on `port` 0 of the namespace's address, bound from a thread that joined
    /// the namespace (the socket stays in it).
    fn listen(&self) -> TcpListener {
        let ns = fs::File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        let address = format!("{}:0", self.address);
        std::thread::spawn(move || {
            // SAFETY: setns on this short-lived thread only; it binds and ends.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            TcpListener::bind(&address).expect("bind in the outside namespace")
        })
        .join()
        .expect("listener thread")
    }
}

impl Drop for OutsideWorld {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A shell command in the busybox image that GETs `/` from `HOST PORT` (appended) and
/// prints the whole response, failing when the connection fails.
const GET: &str = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5";

fn context(env: &TestEnv, name: &str, dockerfile: &str) -> PathBuf {
    let dir = env.scratch.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    dir
}

#[test]
fn run_is_isolated_from_host_loopback_by_default_and_reaches_the_outside() {
    require_tool("slirp4netns", "slirp4netns");
    let env = TestEnv::with_busybox();
    let host = TcpListener::bind("127.0.0.1:0").expect("bind host listener");
    let host_port = host.local_addr().expect("addr").port();
    serve(host, "host-loopback\n");
    let world = OutsideWorld::new();
    let outside = world.listen();
    let outside = {
        let address = outside.local_addr().expect("addr");
        serve(outside, "outside\n");
        address
    };

    // Default network: 127.0.0.1 is the step's own loopback, and slirp4netns's gateway
    // (10.0.2.2) does not lead to the host's loopback either.
    let ctx = context(
        &env,
        "isolated",
        &format!(
            "FROM busybox\n\
             RUN {GET} 127.0.0.1 {host_port} > /loopback || echo unreachable > /loopback\n\
             RUN {GET} 10.0.2.2 {host_port} > /gateway || echo unreachable > /gateway\n\
             RUN {GET} {} {} > /outside\n",
            outside.ip(),
            outside.port()
        ),
    );
    env.build(&ctx, &["-t", "isolated:1"]).assert_ok();
    let rootfs = image_rootfs(&env.root, "isolated:1");
    let read = |f: &str| fs::read_to_string(rootfs.path().join(f)).expect(f);
    assert_eq!(read("loopback"), "unreachable\n");
    assert_eq!(read("gateway"), "unreachable\n");
    assert!(
        read("outside").ends_with("\r\n\r\noutside\n"),
        "{}",
        read("outside")
    );

    // --network host: the step is on the host's loopback.
    let ctx = context(
        &env,
        "host",
        &format!("FROM busybox\nRUN {GET} 127.0.0.1 {host_port} > /loopback\n"),
    );
    env.build(&ctx, &["-t", "host:1", "--network", "host"])
        .assert_ok();
    let rootfs = image_rootfs(&env.root, "host:1");
    let loopback = fs::read_to_string(rootfs.path().join("loopback")).expect("loopback");
    assert!(loopback.ends_with("\r\n\r\nhost-loopback\n"), "{loopback}");
}
