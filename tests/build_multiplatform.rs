//! Multi-platform images: an arm64 base imported with `--platform`, built for arm64 through
//! QEMU user emulation (binfmt_misc), and a platform without a handler refused up front.
//! The arm64 busybox comes from Debian's busybox-static:arm64 (see `util::foreign`).

mod util;

use util::foreign;
use util::TestEnv;

/// `import --platform linux/arm64` writes the platform into the config; the host's
/// platform is the default.
#[test]
fn import_platform_sets_the_config_platform() {
    let env = TestEnv::new();
    let rootfs = foreign::arm64_busybox_rootfs()
        .to_string_lossy()
        .into_owned();
    env.strata(&[
        "import",
        "--platform",
        "linux/arm64",
        &rootfs,
        "busybox:arm64",
    ])
    .assert_ok();
    let config = util::image_config(&env.root, "busybox:arm64");
    assert_eq!(config["architecture"], "arm64", "{config}");
    assert_eq!(config["os"], "linux", "{config}");

    let bad = env.strata(&["import", "--platform", "linux", &rootfs, "x:1"]);
    assert_eq!(bad.status, Some(2), "{bad}");
    assert!(bad.stderr.contains("invalid platform"), "{bad}");
}
