//! Tier: privileged (docs/testing.md). The smallest jail run.
use runner::jail::End;
use runner_tests::*;

#[test]
fn test_echo() {
    if !privileged() {
        return;
    }
    let out = sh("echo hello; id -u; cat /proc/self/cgroup; ls /; hostname");
    eprintln!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        out.end,
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(out.end, End::Exited(0));
    assert!(text(&out.stdout).starts_with("hello\n"));
}
