//! Tier: privileged + vm (docs/testing.md). Every step of the jail (docs/jail.md), proven from
//! inside the jail with a shell, python3 or a C program compiled by gcc in the jail itself.
//!
//! Tests named `vm_*` are the cgroup and verdict tests; they also run in the pure cgroup v2 VM
//! (`cargo xtask vm run -- <test-binary> vm_ --test-threads=1`), where code is 5–30× slower, so
//! their wall-clock bounds scale with `slowdown()`.
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use runner::jail::End;
use runner::profile::plan::Limits;
use runner_tests::*;

/// CPU-bound tests take this lock so that they measure the jail, not each other.
static CPU: Mutex<()> = Mutex::new(());

fn cpu_lock() -> std::sync::MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines of `key=value` printed by a probe script.
fn kv(out: &[u8]) -> std::collections::BTreeMap<String, String> {
    text(out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// One C program for the syscall, IPC and signal probes: `./a.out <mode>`.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread_main(void *arg) { return arg; }

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    long r = 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(m, "ptrace")) r = syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
    else if (!strcmp(m, "mount")) r = syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0);
    else if (!strcmp(m, "bpf")) r = syscall(SYS_bpf, 0, 0, 0);
    else if (!strcmp(m, "unshare")) r = syscall(SYS_unshare, CLONE_NEWUSER);
    else if (!strcmp(m, "keyctl")) r = syscall(SYS_keyctl, 0, 0, 0, 0, 0);
    else if (!strcmp(m, "perf_event_open")) r = syscall(SYS_perf_event_open, 0, 0, -1, -1, 0);
    else if (!strcmp(m, "io_uring_setup")) r = syscall(SYS_io_uring_setup, 1, 0);
    else if (!strcmp(m, "clone_newuser")) {
        r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (r == 0) _exit(0);
    } else if (!strcmp(m, "clone3")) {
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.exit_signal = SIGCHLD;
        r = syscall(SYS_clone3, &ca, sizeof ca);
        if (r == 0) _exit(0);
        printf("clone3=%ld errno=%d\n", r, errno);
        return 0;
    } else if (!strcmp(m, "fork_thread")) {
        pid_t p = fork();
        if (p == 0) _exit(7);
        int st = 0;
        waitpid(p, &st, 0);
        pthread_t t;
        int tr = pthread_create(&t, NULL, thread_main, NULL);
        if (tr == 0) pthread_join(t, NULL);
        printf("fork=%d thread=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, tr);
        return 0;
    } else if (!strcmp(m, "shm_create")) {
        int id = shmget(0x5eed, 4096, IPC_CREAT | 0600);
        int again = shmget(0x5eed, 0, 0);
        int q = msgget(0x5eed, IPC_CREAT | 0600);
        printf("created=%d again=%d msg=%d\n", id >= 0, again == id, q >= 0);
        return 0;
    } else if (!strcmp(m, "shm_lookup")) {
        int id = shmget(0x5eed, 0, 0);
        int e1 = errno;
        int q = msgget(0x5eed, 0);
        int e2 = errno;
        printf("shm=%d shm_errno=%d msg=%d msg_errno=%d\n", id, e1, q, e2);
        return 0;
    } else if (!strcmp(m, "segv")) { volatile int *p = 0; *p = 1; }
    else if (!strcmp(m, "abort")) abort();
    else if (!strcmp(m, "exit3")) exit(3);
    else if (!strcmp(m, "hog")) {
        /* Allocate and touch argv[2] MiB. */
        size_t n = (size_t)atol(argv[2]) << 20;
        char *b = malloc(n);
        if (!b) { printf("malloc failed\n"); return 4; }
        for (size_t i = 0; i < n; i += 4096) b[i] = 1;
        printf("touched\n");
        return 0;
    } else { printf("unknown mode %s\n", m); return 99; }
    printf("%s returned %ld errno=%d\n", m, r, errno);
    return 0;
}
"#;

fn probe() -> (Bench, runner::jail::RunDir) {
    let b = Bench::new();
    let dir = probe_on(&b);
    (b, dir)
}

/// The probe program compiled into a new run directory of `b`'s slot 0.
fn probe_on(b: &Bench) -> runner::jail::RunDir {
    let dir = b.run_dir(0);
    b.compile_c(&dir, 0, PROBE_C);
    dir
}

// ---------------------------------------------------------------------------------------------
// Namespaces

#[test]
fn pid_namespace_shows_only_the_job() {
    if !privileged() {
        return;
    }
    let b = Bench::new();
    let out = b.sh(
        "echo self=$$; echo procs=$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '); \
         test -d /proc/1 && echo init=visible; cat /proc/1/cmdline >/dev/null && echo cmdline=readable; \
         sleep 0 & echo child=$!",
    );
    assert_eq!(out.end, End::Exited(0));
    let kv = kv(&out.stdout);
    // Init is pid 1, the program it forks is pid 2.
    assert_eq!(kv["self"], "2", "the program is the jail's second process");
    // /proc is mounted hidepid=invisible: init (root, a copy of the daemon) is not shown.
    assert!(!kv.contains_key("init"), "init is visible: {kv:?}");
    assert!(!kv.contains_key("cmdline"), "init's cmdline is readable");
    let pids: Vec<u32> = kv["procs"]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!pids.contains(&1) && pids.contains(&2), "{pids:?}");
    assert!(
        pids.len() <= 6 && pids.iter().all(|&p| p < 10),
        "only the job's processes: {pids:?}"
    );
    assert!(kv["child"].parse::<u32>().unwrap() < 10);
}

#[test]
fn mount_namespace_new_root() {
    if !privileged() {
        return;
    }
    let b = Bench::new();
    // A host file in the host's /tmp must not appear in the jail's /tmp.
    // Created new with a random name (O_EXCL): never a file someone planted in /tmp.
    let marker_file = tempfile::Builder::new()
        .prefix("runner-host-marker-")
        .tempfile()
        .unwrap();
    std::fs::write(marker_file.path(), b"host").unwrap();
    let marker = marker_file.path().to_owned();
    let data_dir = b.env.data_dir.display().to_string();
    let script = format!(
        r#"
        for p in /root /var/lib /work /home/jobe/runs/../../../var {data_dir} {marker}; do
            if [ -e "$p" ]; then echo "visible $p"; fi
        done
        touch /x 2>/dev/null && echo "wrote /"
        touch /usr/x 2>/dev/null && echo "wrote /usr"
        touch /etc/x 2>/dev/null && echo "wrote /etc"
        touch /bin/x 2>/dev/null && echo "wrote /bin"
        mkdir /home/x 2>/dev/null && echo "wrote /home"
        touch /dev/x 2>/dev/null && echo "wrote /dev"
        mkdir /home/jobe/runs/x 2>/dev/null && echo "wrote /home/jobe/runs"
        echo root_opts=$(awk '$2 == "/" {{print $4}}' /proc/mounts | cut -d, -f1)
        echo usr_opts=$(awk '$2 == "/usr" {{print $4}}' /proc/mounts | cut -d, -f1)
        echo dev_opts=$(awk '$2 == "/dev" {{print $4}}' /proc/mounts | cut -d, -f1)
        echo runs_opts=$(awk '$2 == "/home/jobe/runs" {{print $4}}' /proc/mounts | cut -d, -f1)
        echo runs=$(ls -A /home/jobe/runs | wc -l)
        echo null=$(echo x > /dev/null && echo writable)
        touch ./f && echo rundir=ok
        touch /tmp/t && echo tmp=ok
        touch /dev/shm/s && echo shm=ok
        echo dev=$(ls -A /dev | tr '\n' ' ')
        echo mounts=$(wc -l < /proc/mounts)
        "#,
        marker = marker.display()
    );
    let out = b.sh(&script);
    drop(marker_file);
    assert_eq!(out.end, End::Exited(0));
    let s = text(&out.stdout);
    assert!(!s.contains("visible"), "host paths visible:\n{s}");
    assert!(!s.contains("wrote"), "read-only paths written:\n{s}");
    let kv = kv(&out.stdout);
    assert_eq!(kv["root_opts"], "ro");
    assert_eq!(kv["usr_opts"], "ro");
    // The slot template's /dev is shared by its runs: read-only, the device nodes writable.
    assert_eq!(kv["dev_opts"], "ro");
    assert_eq!(kv["null"], "writable");
    // The run's own mount point for its run directory, alone and read-only.
    assert_eq!(kv["runs_opts"], "ro");
    assert_eq!(kv["runs"], "1");
    assert_eq!(kv["rundir"], "ok");
    assert_eq!(kv["tmp"], "ok");
    assert_eq!(kv["shm"], "ok");
    let dev: BTreeSet<&str> = kv["dev"].split_whitespace().collect();
    let want: BTreeSet<&str> = [
        "null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm",
    ]
    .into_iter()
    .collect();
    assert_eq!(dev, want);
}

#[test]
fn tmp_and_shm_are_private_per_run() {
    if !privileged() {
        return;
    }
    let b = Bench::new();
    let first = b.sh("echo secret > /tmp/left; echo secret > /dev/shm/left; ls /tmp /dev/shm");
    assert_eq!(first.end, End::Exited(0));
    assert!(text(&first.stdout).matches("left").count() == 2);
    let second = b.sh("ls -A /tmp /dev/shm; cat /tmp/left /dev/shm/left 2>&1; true");
    assert_eq!(second.end, End::Exited(0));
    assert!(
        !text(&second.stdout).contains("secret"),
        "{}",
        text(&second.stdout)
    );
    assert!(text(&second.stdout).contains("No such file"));
}

/// The mount table of a process as (mount point, options, filesystem type) lines, sorted: mount
/// ids and peer groups differ between two copies of the same namespace, the tree does not.
fn mount_table(mountinfo: &str) -> Vec<String> {
    let mut v: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            Some(format!("{} {} {fstype}", f.get(4)?, f.get(5)?))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn slot_template_keeps_nothing_between_runs() {
    if !privileged() {
        return;
    }
    // Every jail of a slot starts in a copy of the slot's template mount namespace, whose
    // filesystems are shared by all of them: nothing a run does may reach the next one.
    let b = Bench::new();
    let template = || {
        let tid = b.slot(0).spawner_tid();
        mount_table(&std::fs::read_to_string(format!("/proc/self/task/{tid}/mountinfo")).unwrap())
    };
    let before = template();
    assert!(
        before.iter().any(|l| l.starts_with("/usr "))
            && before.iter().all(|l| !l.starts_with("/tmp ")),
        "template: {before:?}"
    );
    // What a jail sees of itself, the run directory's name left out.
    let look = r#"
        awk '{print $5, $6, $9}' /proc/self/mountinfo | sed 's/jobe_[A-Za-z0-9]*/jobe_X/' | sort
        for d in / /dev /home /home/jobe /home/jobe/runs /tmp /dev/shm; do echo "$d: $(ls -A $d | sed 's/jobe_[A-Za-z0-9]*/jobe_X/' | tr '\n' ' ')"; done
        echo "sleeping: $(cat /proc/[0-9]*/comm 2>/dev/null | grep -cx sleep)"
        echo "ipc: $(tail -n +2 /proc/sysvipc/shm | wc -l) $(tail -n +2 /proc/sysvipc/msg | wc -l) $(tail -n +2 /proc/sysvipc/sem | wc -l)"
    "#;
    let first = b.sh(look);
    assert_eq!(first.end, End::Exited(0));
    // A run that tries to leave something behind everywhere it can reach.
    let dir = probe_on(&b);
    let leave = b.spawn(&dir, 0, &["./a.out", "shm_create"], limits(), None);
    assert_eq!(leave.end, End::Exited(0));
    let leave = b.sh(
        "echo x > /tmp/left; echo x > /dev/shm/left; echo x > left; \
         mkdir /home/jobe/runs/left /home/jobe/left /left /dev/left /tmp/../left 2>/dev/null; \
         touch /dev/left /proc/left 2>/dev/null; ln -s / /tmp/link; \
         (setsid sh -c 'sleep 60' &) ; (sleep 60 &); true",
    );
    assert_eq!(leave.end, End::Exited(0));
    let second = b.sh(look);
    assert_eq!(second.end, End::Exited(0));
    assert_eq!(text(&second.stdout), text(&first.stdout));
    assert!(
        !text(&second.stdout).contains("left"),
        "{}",
        text(&second.stdout)
    );
    // The template itself is as it was: no mount was added, removed or changed in it.
    assert_eq!(template(), before);
}

#[test]
fn extra_ro_paths_are_attached_read_only() {
    if !privileged() {
        return;
    }
    // A profile's extra read-only path outside the system directories: its mount point is in
    // the slot template, the host directory is attached per run, read-only.
    let host = std::path::PathBuf::from(format!("/var/tmp/runner-extra-{}", std::process::id()));
    let other = std::path::PathBuf::from(format!("/var/tmp/runner-other-{}", std::process::id()));
    for d in [&host, &other] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/file"), b"tool\n").unwrap();
    }
    let b = Bench::with_extra_ro(&[host.clone(), other.clone()]);
    let dir = b.run_dir(0);
    let h = host.display();
    let o = other.display();
    let script = format!(
        "cat {h}/sub/file; echo x > {h}/sub/new 2>/dev/null && echo wrote; \
         echo opts=$(awk '$2 == \"{h}\" {{print $4}}' /proc/mounts | cut -d, -f1); \
         echo other=$(ls -A {o} | wc -l)"
    );
    let out = b.spawn_extra(
        &dir,
        0,
        &["/bin/sh", "-c", &script],
        limits(),
        None,
        &[host.display().to_string()],
    );
    let _ = std::fs::remove_dir_all(&host);
    let _ = std::fs::remove_dir_all(&other);
    assert_eq!(out.end, End::Exited(0));
    let s = text(&out.stdout);
    assert!(s.starts_with("tool\n"), "{s}");
    assert!(!s.contains("wrote"), "{s}");
    let kv = kv(&out.stdout);
    assert_eq!(kv["opts"], "ro");
    // Another profile's path is only an empty mount point in this run.
    assert_eq!(kv["other"], "0");
}

#[test]
fn network_namespace_is_empty() {
    if !privileged() {
        return;
    }
    // The namespace alone, without the eBPF monitor's connect/sendmsg deny programs (which
    // would answer EPERM first; tests/verdicts.rs checks those).
    let b = Bench::with_ebpf(EbpfMode::Off);
    let py = r#"
import errno, fcntl, socket, struct
print("ifaces=" + ",".join(n for _, n in socket.if_nameindex()))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0) + b"\0" * 22)[:18])[1]
print("lo_up=%d" % (flags & 1))
try:
    s.sendto(b"x", ("127.0.0.1", 9))
    print("udp=sent")
except OSError as e:
    print("udp=%d" % e.errno)
try:
    s.sendto(b"x", ("10.0.0.1", 9))
    print("udp_remote=sent")
except OSError as e:
    print("udp_remote=%d" % e.errno)
for name, fam, addr in [("tcp4", socket.AF_INET, ("127.0.0.1", 80)), ("tcp6", socket.AF_INET6, ("::1", 80))]:
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.settimeout(2)
    try:
        t.connect(addr)
        print(name + "=connected")
    except OSError as e:
        print("%s=%d" % (name, e.errno))
"#;
    let out = b.py(py, limits());
    let dev = b.sh("cat /proc/net/dev");
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(dev.end, End::Exited(0));
    let ifaces: Vec<String> = text(&dev.stdout)
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(ifaces, ["lo"], "/proc/net/dev");
    let kv = kv(&out.stdout);
    assert_eq!(kv["ifaces"], "lo");
    assert_eq!(kv["lo_up"], "0", "loopback is down");
    // UDP is not covered by Landlock: the empty namespace alone stops it.
    assert_eq!(kv["udp"], libc::ENETUNREACH.to_string());
    assert_eq!(kv["udp_remote"], libc::ENETUNREACH.to_string());
    let abi = runner::jail::landlock::Abi::detect().expect("landlock").0;
    // With Landlock ≥ 4 the TCP connect is refused before routing (EACCES); without, the
    // namespace still makes it fail (ENETUNREACH).
    let want = if abi >= 4 {
        libc::EACCES
    } else {
        libc::ENETUNREACH
    };
    assert_eq!(kv["tcp4"], want.to_string(), "landlock ABI {abi}");
    assert_eq!(kv["tcp6"], want.to_string(), "landlock ABI {abi}");
}

#[test]
fn ipc_namespace_is_private_per_run() {
    if !privileged() {
        return;
    }
    let (b, dir) = probe();
    let first = b.spawn(&dir, 0, &["./a.out", "shm_create"], limits(), None);
    assert_eq!(first.end, End::Exited(0));
    assert_eq!(text(&first.stdout).trim(), "created=1 again=1 msg=1");
    let second = b.spawn(&dir, 0, &["./a.out", "shm_lookup"], limits(), None);
    assert_eq!(second.end, End::Exited(0));
    assert_eq!(
        text(&second.stdout).trim(),
        format!("shm=-1 shm_errno={0} msg=-1 msg_errno={0}", libc::ENOENT)
    );
    // Nor did it reach the host's IPC namespace (key 0x5eed = 24301).
    let host = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(
        !host
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some("24301"))
    );
}

#[test]
fn uts_namespace_hostname() {
    if !privileged() {
        return;
    }
    let out = Bench::new().sh("hostname; uname -n; cat /proc/sys/kernel/hostname");
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(text(&out.stdout), "runner\nrunner\nrunner\n");
}

// ---------------------------------------------------------------------------------------------
// Credentials, Landlock, seccomp, rlimits, environment

#[test]
fn credentials_are_the_slot_user_without_capabilities() {
    if !privileged() {
        return;
    }
    let b = Bench::default_uids();
    for slot in 0..2 {
        let out = b.run(
            slot,
            &[
                "/bin/sh",
                "-c",
                "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); \
                 grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' \
                 /proc/self/status",
            ],
            limits(),
            &[],
            None,
        );
        assert_eq!(out.end, End::Exited(0));
        let s = text(&out.stdout);
        let uid = 1_990_000 + runner_tests::uid_offset() + slot as u32;
        assert_eq!(b.uid(slot), uid);
        assert!(
            s.contains(&format!("uid={uid} gid=1990000 groups=1990000\n")),
            "{s}"
        );
        let status: std::collections::BTreeMap<&str, Vec<&str>> = s
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k, v.split_whitespace().collect()))
            .collect();
        let u = uid.to_string();
        assert_eq!(status["Uid"], [&*u; 4], "real, effective, saved, fs uid");
        assert_eq!(status["Gid"], ["1990000"; 4]);
        assert_eq!(status["Groups"], ["1990000"]);
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status[cap], ["0000000000000000"], "{cap}");
        }
        assert_eq!(status["NoNewPrivs"], ["1"]);
        assert_eq!(status["Seccomp"], ["2"], "seccomp filter mode");
    }
}

/// What Landlock adds on top of the mount tree and DAC: /proc is mounted read-write and
/// `/proc/self/comm` is writable by its owner, so only Landlock's read-only rule for /proc can
/// refuse the write (EACCES). The run directory (rule: read-write) stays writable. The TCP half
/// of Landlock is proven in `network_namespace_is_empty` (EACCES instead of ENETUNREACH).
#[test]
fn landlock_denies_writes_outside_its_rules() {
    if !privileged() {
        return;
    }
    let py = r#"
import os
def w(path, data):
    try:
        with open(path, "w") as f:
            f.write(data)
        return "ok"
    except OSError as e:
        return str(e.errno)
print("comm=" + w("/proc/self/comm", "renamed"))
print("proc_rw=" + ("rw" if any(l.split()[1] == "/proc" and l.split()[3].startswith("rw") for l in open("/proc/mounts")) else "ro"))
print("owner=%d" % (os.stat("/proc/self/comm").st_uid == os.getuid()))
print("rundir=" + w("mine.txt", "x"))
print("tmp=" + w("/tmp/mine.txt", "x"))
print("devnull=" + w("/dev/null", "x"))
"#;
    let out = Bench::new().py(py, limits());
    assert_eq!(out.end, End::Exited(0));
    let kv = kv(&out.stdout);
    assert_eq!(
        kv["proc_rw"], "rw",
        "/proc is a read-write mount: DAC and mounts allow it"
    );
    assert_eq!(kv["owner"], "1");
    assert_eq!(
        kv["comm"],
        libc::EACCES.to_string(),
        "Landlock refuses the write"
    );
    assert_eq!(kv["rundir"], "ok");
    assert_eq!(kv["tmp"], "ok");
    assert_eq!(kv["devnull"], "ok");
}

#[test]
fn seccomp_denied_syscalls_end_the_run() {
    if !privileged() {
        return;
    }
    let (b, dir) = probe();
    for name in [
        "ptrace",
        "mount",
        "bpf",
        "unshare",
        "keyctl",
        "perf_event_open",
        "io_uring_setup",
    ] {
        let out = b.spawn(&dir, 0, &["./a.out", name], limits(), None);
        assert_eq!(
            out.end,
            End::Syscall(name.to_owned()),
            "{name}: {}",
            text(&out.stdout)
        );
        assert!(out.stdout.is_empty(), "{name} returned to the program");
    }
    let out = b.spawn(&dir, 0, &["./a.out", "clone_newuser"], limits(), None);
    assert!(
        matches!(&out.end, End::Syscall(n) if n.contains("clone")),
        "clone(CLONE_NEWUSER): {:?}",
        out.end
    );
}

/// The fixed rules of every policy: clone3 fails with ENOSYS (the program goes on), ordinary
/// fork and threads work.
#[test]
fn seccomp_clone3_enosys_fork_and_threads_work() {
    if !privileged() {
        return;
    }
    let (b, dir) = probe();
    let out = b.spawn(&dir, 0, &["./a.out", "clone3"], limits(), None);
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("clone3=-1 errno={}", libc::ENOSYS)
    );
    let out = b.spawn(&dir, 0, &["./a.out", "fork_thread"], limits(), None);
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(text(&out.stdout).trim(), "fork=7 thread=0");
}

/// The job runs 5 nice levels below the daemon (this test process plays the daemon), so a job
/// that keeps every CPU busy cannot delay the daemon's kill at the budget or its answers.
#[test]
fn job_runs_below_the_daemon_priority() {
    if !privileged() {
        return;
    }
    // Field 19 of /proc/<pid>/stat is the nice value (after the ")" that ends the command name).
    let nice_of = |stat: &str| -> i32 {
        let rest = &stat[stat.rfind(')').expect("stat") + 2..];
        rest.split_whitespace()
            .nth(16)
            .expect("nice")
            .parse()
            .expect("nice")
    };
    let daemon = nice_of(&std::fs::read_to_string("/proc/self/stat").unwrap());
    let out = Bench::new().sh("cat /proc/self/stat");
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(nice_of(&text(&out.stdout)), (daemon + 5).min(19));
}

/// The program is the OOM killer's first choice (1000), and its write (a vfork child's) does not
/// reach the daemon (this test process) through the memory the jail's init shares with it. Init
/// (pid 1, root) is not even visible to the program (`hidepid=invisible`).
#[test]
fn oom_score_adj_program_first_daemon_untouched() {
    if !privileged() {
        return;
    }
    let daemon_before = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let out = Bench::new()
        .sh("cat /proc/self/oom_score_adj; if [ -e /proc/1 ]; then echo init visible; fi");
    assert_eq!(out.end, End::Exited(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1000\n");
    let daemon_after = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    assert_eq!(daemon_after, daemon_before);
}

#[test]
fn rlimits() {
    if !privileged() {
        return;
    }
    let b = Bench::new();
    let l = limits();
    let out = b.sh("echo core=$(ulimit -c); echo fsize=$(ulimit -f); cat /proc/self/limits");
    assert_eq!(out.end, End::Exited(0));
    let s = text(&out.stdout);
    let first = kv(&out.stdout);
    assert_eq!(first["core"], "0");
    // dash counts -f in 512-byte blocks, bash in 1024: accept the exact value in either.
    let fsize: u64 = first["fsize"].parse().unwrap();
    assert!(
        fsize == l.disk_bytes / 1024 || fsize == l.disk_bytes / 512,
        "ulimit -f {fsize}"
    );
    let limit = |name: &str| -> Vec<String> {
        let line = s
            .lines()
            .find(|x| x.starts_with(name))
            .unwrap_or_else(|| panic!("{name}"));
        line[name.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(limit("Max core file size")[..2], ["0", "0"]);
    let disk = l.disk_bytes.to_string();
    assert_eq!(limit("Max file size")[..2], [disk.clone(), disk.clone()]);
    assert_eq!(
        limit("Max stack size")[..2],
        [(8u64 << 20).to_string(), "unlimited".into()]
    );
    let cpu = (l.cpu.as_secs() + 2).to_string();
    assert_eq!(limit("Max cpu time")[..2], [cpu.clone(), cpu]);
    assert_eq!(limit("Max open files")[..2], ["8192", "8192"]);
    // Never inherited from the daemon: no real-time class, no negative nice value.
    assert_eq!(limit("Max realtime priority")[..2], ["0", "0"]);
    assert_eq!(limit("Max nice priority")[..2], ["0", "0"]);
    // No address-space limit unless the step asks for one (runtimes: JVM, V8)…
    assert_eq!(limit("Max address space")[..2], ["unlimited", "unlimited"]);
    // …and exactly it when it does (native code, Jobe's RLIMIT_AS): a larger mmap fails.
    let capped = Limits {
        address_space_bytes: Some(64 << 20),
        ..limits()
    };
    let py = "import mmap\nprint(open('/proc/self/limits').read())\ntry:\n    mmap.mmap(-1, 128 << 20)\n    print('big=mapped')\nexcept OSError as e:\n    print('big=%d' % e.errno)\n";
    let out = b.run(
        0,
        &["/usr/bin/python3", "p.py"],
        capped,
        &[("p.py", py.as_bytes())],
        None,
    );
    assert_eq!(out.end, End::Exited(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let line = s
        .lines()
        .find(|x| x.starts_with("Max address space"))
        .unwrap();
    let w: Vec<&str> = line.split_whitespace().collect();
    let want = (64u64 << 20).to_string();
    assert_eq!(w[3..5], [want.clone(), want], "{line}");
    assert_eq!(kv(&out.stdout)["big"], libc::ENOMEM.to_string());

    // Writing past disk_bytes: a shell tool dies of SIGXFSZ…
    let small = Limits {
        disk_bytes: 1 << 20,
        ..limits()
    };
    let script = format!("exec head -c {} /dev/zero > big", (1 << 20) + 4096);
    let out = b.run(0, &["/bin/sh", "-c", &script], small, &[], None);
    assert_eq!(out.end, End::Signaled(libc::SIGXFSZ));
    // …and python (which ignores SIGXFSZ) gets EFBIG with the file cut at the limit.
    let py = "import os\ntry:\n    with open('big', 'wb') as f:\n        f.write(b'x' * (2 << 20))\nexcept OSError as e:\n    print('errno=%d' % e.errno)\nprint('size=%d' % os.path.getsize('big'))\n";
    let out = b.run(
        0,
        &["/usr/bin/python3", "p.py"],
        small,
        &[("p.py", py.as_bytes())],
        None,
    );
    assert_eq!(out.end, End::Exited(0));
    let res = kv(&out.stdout);
    assert_eq!(res["errno"], libc::EFBIG.to_string(), "File too large");
    assert_eq!(res["size"], (1u64 << 20).to_string());
}

#[test]
fn environment_cwd_and_stdin() {
    if !privileged() {
        return;
    }
    let b = Bench::new();
    // `env` run directly (no shell adding PWD and friends): exactly what the step sets.
    let out = b.run(0, &["/usr/bin/env"], limits(), &[], None);
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(
        text(&out.stdout),
        "PATH=/usr/local/bin:/usr/bin:/bin\nLANG=C.UTF-8\n"
    );
    let dir = b.run_dir(0);
    let out = b.spawn(
        &dir,
        0,
        &["/usr/bin/python3", "-c", "import os; print(os.getcwd())"],
        limits(),
        None,
    );
    assert_eq!(out.end, End::Exited(0));
    let cwd = text(&out.stdout).trim().to_owned();
    assert_eq!(cwd, dir.jail);
    let name = cwd
        .strip_prefix("/home/jobe/runs/jobe_")
        .expect("cwd prefix");
    assert!(
        name.len() == 6 && name.chars().all(|c| c.is_ascii_alphanumeric()),
        "{cwd}"
    );

    let input = b"line one\n\0binary\xff\nlast";
    let out = b.run(0, &["/bin/cat"], limits(), &[], Some(input));
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(out.stdout, input);
    let out = b.run(
        0,
        &["/bin/sh", "-c", "readlink /proc/self/fd/0; cat; echo eof"],
        limits(),
        &[],
        None,
    );
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(text(&out.stdout), "/dev/null\neof\n");
}

/// Judge mode's additions, from inside the jail: the compiled artifact is bound read-only into
/// a fresh run directory (which stays writable), stdin is exactly an open file's content, the
/// file itself cannot be reopened through its descriptor, and the directory it lives in (like
/// the test-set store) is not in the jail at all.
#[test]
fn artifact_read_only_stdin_from_a_file_store_invisible() {
    if !privileged() {
        return;
    }
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let b = Bench::new();
    // The compile step's run directory: a file and an executable script, made in a jail.
    let compile_dir = b.run_dir(0);
    let out = b.spawn(
        &compile_dir,
        0,
        &[
            "/bin/sh",
            "-c",
            "printf 'compiled\\n' > prog.txt && printf '#!/bin/sh\\necho ran\\n' > run.sh \
             && chmod 755 run.sh && mkdir -p pkg && echo inner > pkg/a.txt",
        ],
        limits(),
        None,
    );
    assert_eq!(out.end, End::Exited(0));
    let artifact = b.env.jail.make_artifact(&compile_dir).expect("artifact");
    drop(compile_dir);
    let names: Vec<&str> = artifact.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["pkg", "prog.txt", "run.sh"]);
    // A private store: root's 0700 directory with a 0600 file, as <data_dir>/testsets.
    let store = b.env.data_dir.join("store-like");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&store)
        .unwrap();
    let input_path = store.join("input");
    let input = b"line one\n\0binary\xff\nlast";
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&input_path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, input))
        .unwrap();
    let script = format!(
        "cat prog.txt; ./run.sh; cat pkg/a.txt; \
         (echo x >> prog.txt) 2>/dev/null && echo prog-writable || echo prog-ro; \
         rm -f prog.txt 2>/dev/null; test -e prog.txt && echo prog-kept; \
         mv run.sh moved.sh 2>/dev/null || echo run-kept; \
         touch pkg/new 2>/dev/null && echo pkg-writable || echo pkg-ro; \
         touch new.txt && echo cwd-writable; \
         cat /proc/self/fd/0 >/dev/null 2>&1 && echo reopened || echo no-reopen; \
         ls {} >/dev/null 2>&1 && echo store-visible || echo store-absent; \
         ls {} >/dev/null 2>&1 && echo data-visible || echo data-absent",
        store.display(),
        b.env.data_dir.display()
    );
    let dir = b.run_dir(1);
    let stdin = std::fs::File::open(&input_path).unwrap();
    let out = b.spawn_with(
        &dir,
        1,
        &["/bin/sh", "-c", &script],
        limits(),
        runner::jail::StepExtras {
            stdin_file: Some(&stdin),
            artifact: Some(&artifact),
            ..Default::default()
        },
    );
    assert_eq!(out.end, End::Exited(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "compiled\nran\ninner\nprog-ro\nprog-kept\nrun-kept\npkg-ro\ncwd-writable\n\
         no-reopen\nstore-absent\ndata-absent\n"
    );
    // On the host the artifact is as it was.
    assert_eq!(
        std::fs::read(artifact.host().join("prog.txt")).unwrap(),
        b"compiled\n"
    );
    // Stdin is exactly the file, binary bytes included.
    let stdin = std::fs::File::open(&input_path).unwrap();
    let out = b.spawn_with(
        &dir,
        1,
        &["/bin/cat"],
        limits(),
        runner::jail::StepExtras {
            stdin_file: Some(&stdin),
            ..Default::default()
        },
    );
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(out.stdout, input);
    // Past the stdout cap: the capped reader says so, and with the judge's flag the step is
    // killed rather than left running.
    let mut l = limits();
    l.stream_bytes = 1000;
    let out = b.spawn_with(
        &dir,
        1,
        &["/bin/sh", "-c", "while :; do echo spam; done"],
        l,
        runner::jail::StepExtras {
            kill_on_stdout_overflow: true,
            ..Default::default()
        },
    );
    assert!(out.stdout_truncated);
    assert_eq!(out.stdout.len(), 1000);
    assert_eq!(out.end, End::Signaled(libc::SIGKILL));
    let out = b.spawn(&dir, 1, &["/bin/sh", "-c", "echo short"], l, None);
    assert!(!out.stdout_truncated);
    drop(dir);
    let host = artifact.host().to_owned();
    drop(artifact);
    assert!(
        !host.exists(),
        "the artifact is removed with its last owner"
    );
}

// ---------------------------------------------------------------------------------------------
// Cgroups and verdicts (also run in the pure cgroup v2 VM)

#[test]
fn vm_memory_limit_is_mle() {
    if !privileged() {
        return;
    }
    let (b, dir) = probe();
    let k = slowdown();
    let l = Limits {
        memory_bytes: 64 << 20,
        cpu: Duration::from_secs_f64(3.0 * k),
        wall: Duration::from_secs_f64(6.0 * k),
        ..limits()
    };
    // Under the limit: fine.
    let out = b.spawn(&dir, 0, &["./a.out", "hog", "16"], l, None);
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(text(&out.stdout), "touched\n");
    // Twice the limit, touched: the kernel's OOM killer, reported as Memory.
    let out = b.spawn(&dir, 0, &["./a.out", "hog", "128"], l, None);
    assert_eq!(out.end, End::Memory);
    assert!(!text(&out.stdout).contains("touched"));
}

#[test]
fn vm_cpu_limit() {
    if !privileged() {
        return;
    }
    let _g = cpu_lock();
    let k = slowdown();
    let l = Limits {
        cpu: Duration::from_millis(500),
        wall: Duration::from_secs_f64(5.0 * k),
        ..limits()
    };
    let out = Bench::new().run(0, &["/bin/sh", "-c", "while :; do :; done"], l, &[], None);
    assert_eq!(out.end, End::CpuTime);
    let hi = if k > 1.0 { 1.5 } else { 0.7 };
    assert!(
        (0.5..=hi).contains(&out.usage.cpu_secs),
        "cpu {} s for a 0.5 s budget",
        out.usage.cpu_secs
    );
}

#[test]
fn vm_cpu_budget_summed_over_processes() {
    if !privileged() {
        return;
    }
    let _g = cpu_lock();
    let k = slowdown();
    let l = Limits {
        cpu: Duration::from_secs(1),
        wall: Duration::from_secs_f64(5.0 * k),
        ..limits()
    };
    let script = "for i in 1 2 3 4; do (while :; do :; done) & done; wait";
    let out = Bench::new().run(0, &["/bin/sh", "-c", script], l, &[], None);
    assert_eq!(out.end, End::CpuTime);
    assert!(out.usage.cpu_secs >= 1.0, "{:?}", out.usage);
    // The proof that the budget is the sum: a per-process budget would let the four spinners burn
    // 4 s of CPU before the last one died. Bounding the total (not the wall time, which a loaded
    // host stretches) keeps the test meaningful on a busy machine; the slow VM gets more slack.
    let cpu_bound = if k > 1.0 { 3.5 } else { 2.0 };
    assert!(out.usage.cpu_secs < cpu_bound, "{:?}", out.usage);
}

#[test]
fn vm_wall_limit() {
    if !privileged() {
        return;
    }
    let k = slowdown();
    let l = Limits {
        wall: Duration::from_secs(1),
        ..limits()
    };
    let b = Bench::new();
    // The run only, not the jail's set-up (which loads the eBPF monitor).
    let t = Instant::now();
    let out = b.run(0, &["/bin/sleep", "10"], l, &[], None);
    let elapsed = t.elapsed().as_secs_f64();
    assert_eq!(out.end, End::WallTime);
    assert!(out.usage.wall_secs >= 1.0, "{:?}", out.usage);
    assert!(elapsed < 1.0 + 1.0 * k, "{elapsed} s");
}

#[test]
fn vm_fork_bomb_contained() {
    if !privileged() {
        return;
    }
    let k = slowdown();
    let l = Limits {
        procs: 16,
        wall: Duration::from_secs_f64(3.0 * k),
        cpu: Duration::from_secs_f64(3.0 * k),
        ..limits()
    };
    let b = Bench::new();
    // The pids limit holds: starting 40 sleepers fails at a fork (dash gives up with exit 2),
    // and the sleepers die with the shell instead of keeping the run alive for 5 s.
    let t = Instant::now();
    let script = "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo all started";
    let out = b.run(0, &["/bin/sh", "-c", script], l, &[], None);
    assert_eq!(out.end, End::Exited(2));
    assert!(!text(&out.stdout).contains("all started"));
    assert!(text(&out.stderr).contains("fork"), "{}", text(&out.stderr));
    assert!(t.elapsed().as_secs_f64() < 4.0 * k);
    // The classic bomb ends (no hang) and leaves nothing behind.
    let t = Instant::now();
    let out = b.run(0, &["/bin/sh", "-c", "b(){ b|b& }; b"], l, &[], None);
    assert!(
        matches!(
            out.end,
            End::Exited(_) | End::Signaled(_) | End::CpuTime | End::WallTime
        ),
        "{:?}",
        out.end
    );
    assert!(t.elapsed().as_secs_f64() < 4.0 * k);
    let left = host_pids_of_uid(b.uid(0));
    assert!(
        left.is_empty(),
        "processes of the slot uid left on the host: {left:?}"
    );
}

/// Host cgroup directories (v2 and v1) of the processes of `uid`, found by polling /proc.
fn watch_cgroups(uid: u32, stop: &std::sync::atomic::AtomicBool) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for pid in host_pids_of_uid(uid) {
            if let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
                for line in cg.lines() {
                    let mut f = line.splitn(3, ':');
                    let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
                        continue;
                    };
                    if path.contains("/job-") {
                        seen.insert(format!("{ctrl}:{path}"));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}

/// Every directory under /sys/fs/cgroup whose path ends with `suffix`.
fn cgroup_dirs_ending(suffix: &str) -> Vec<std::path::PathBuf> {
    fn walk(d: &std::path::Path, suffix: &str, depth: u32, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if p.to_string_lossy().ends_with(suffix) {
                out.push(p.clone());
            }
            if depth < 8 {
                walk(&p, suffix, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), suffix, 0, &mut out);
    out
}

/// Busy loops at nice -10 (root may), one per CPU and one more, killed when dropped: they keep
/// exiting threads off the CPU, which is when teardown races the kernel.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start() -> Hogs {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        Hogs(
            (0..n)
                .map(|_| {
                    std::process::Command::new("nice")
                        .args(["-n", "-10", "sh", "-c", "while :; do :; done"])
                        .spawn()
                        .expect("start a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn cgroups_removed_while_the_machine_is_busy() {
    if !privileged() {
        return;
    }
    // A slot's spawner thread is joined before the slot's v1 groups are removed, but the
    // kernel takes it out of them later in its exit; a busy machine widens that window (a CI
    // run once left `runner-<pid>-<n>` behind in every hierarchy). Jail, slots and a job each
    // time, under load, and nothing may be left.
    let _cpu = cpu_lock();
    let hogs = Hogs::start();
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 0..4 {
        let b = Bench::new();
        let subtrees = b.env.jail.cgroup_subtrees();
        assert!(!subtrees.is_empty());
        let out = b.sh("true");
        assert_eq!(out.end, End::Exited(0));
        drop(b);
        let left: Vec<_> = subtrees.iter().filter(|p| p.exists()).collect();
        assert!(
            left.is_empty(),
            "round {round}: cgroups left behind: {left:?}"
        );
        assert!(Instant::now() < deadline, "teardown took over a minute");
    }
    drop(hogs);
}

#[test]
fn vm_nothing_survives() {
    if !privileged() {
        return;
    }
    let k = slowdown();
    let b = Bench::new();
    let uid = b.uid(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let dir = b.run_dir(0);
    let host_dir = dir.host.clone();
    let (out, cgroups) = std::thread::scope(|s| {
        let w = s.spawn(|| watch_cgroups(uid, &stop));
        // A daemon in its own session, a double-forked orphan, a plain background job; the
        // program sleeps a little so the watcher sees the job's cgroup, then exits 0.
        let script = "setsid sh -c 'sleep 100' & (sleep 100 &) ; sleep 100 & \
                      sleep 0.3; echo started";
        let l = Limits {
            wall: Duration::from_secs_f64(4.0 * k),
            ..limits()
        };
        let out = b.spawn(&dir, 0, &["/bin/sh", "-c", script], l, None);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, w.join().unwrap())
    });
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(text(&out.stdout), "started\n");
    let left = host_pids_of_uid(uid);
    assert!(
        left.is_empty(),
        "processes of the slot uid after spawn returned: {left:?}"
    );
    assert!(!cgroups.is_empty(), "the watcher saw no job cgroup");
    // The job's cgroup directories are gone once spawn returns.
    let mut runner_dirs = BTreeSet::new();
    for cg in &cgroups {
        let path = cg.split_once(':').unwrap().1;
        let job = path.rsplit('/').next().unwrap();
        let runner = path.rsplit('/').nth(1).unwrap();
        assert!(runner.starts_with("runner-"), "{cg}");
        runner_dirs.insert(runner.to_owned());
        let found = cgroup_dirs_ending(&format!("{runner}/{job}"));
        assert!(found.is_empty(), "job cgroup left: {found:?}");
    }
    let found: Vec<_> = runner_dirs
        .iter()
        .flat_map(|r| cgroup_dirs_ending(r))
        .collect();
    assert!(
        !found.is_empty(),
        "the jail's own subtree exists while it lives"
    );
    assert!(host_dir.exists());
    drop(dir);
    assert!(
        gone_within(&host_dir, Duration::from_secs(5)),
        "run directory left after drop"
    );
    drop(b);
    let found: Vec<_> = runner_dirs
        .iter()
        .flat_map(|r| cgroup_dirs_ending(r))
        .collect();
    assert!(
        found.is_empty(),
        "runner cgroup subtree left after the jail was dropped: {found:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Output and how programs end

#[test]
fn output_is_capped_without_blocking() {
    if !privileged() {
        return;
    }
    let cap = 64 * 1024;
    let l = Limits {
        stream_bytes: cap,
        ..limits()
    };
    let script = format!(
        "head -c {0} /dev/zero | tr '\\0' o; head -c {0} /dev/zero | tr '\\0' e >&2; echo done >&2; exit 0",
        3 * cap
    );
    let out = Bench::new().run(0, &["/bin/sh", "-c", &script], l, &[], None);
    assert_eq!(
        out.end,
        End::Exited(0),
        "the program was not blocked by the cap"
    );
    assert_eq!(out.stdout.len() as u64, cap);
    assert!(out.stdout.iter().all(|&c| c == b'o'));
    assert_eq!(out.stderr.len() as u64, cap);
    assert!(
        out.stderr.iter().all(|&c| c == b'e'),
        "stderr is a separate stream"
    );
    // Small outputs come through whole, each on its own stream.
    let out = Bench::new().sh("echo out; echo err >&2");
    assert_eq!(
        (text(&out.stdout).as_str(), text(&out.stderr).as_str()),
        ("out\n", "err\n")
    );
}

#[test]
fn signals_and_exit_codes() {
    if !privileged() {
        return;
    }
    let (b, dir) = probe();
    let cases = [
        ("segv", End::Signaled(libc::SIGSEGV)),
        ("abort", End::Signaled(libc::SIGABRT)),
        ("exit3", End::Exited(3)),
    ];
    for (mode, want) in cases {
        let out = b.spawn(&dir, 0, &["./a.out", mode], limits(), None);
        assert_eq!(out.end, want, "{mode}");
    }
    let out = b.spawn(&dir, 0, &["./missing"], limits(), None);
    assert_eq!(out.end, End::ExecFailed(libc::ENOENT));
    // As a process started from a shell: SIGPIPE not ignored (the daemon ignores it), nothing
    // blocked, so a pipeline's writer dies quietly when its reader is gone.
    let out = Bench::new().sh("grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -1");
    assert_eq!(out.end, End::Exited(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let status = kv(&text(&out.stdout).replace(":\t", "=").into_bytes());
    let mask = |k: &str| u64::from_str_radix(&status[k], 16).expect("a signal mask");
    assert_eq!(mask("SigBlk"), 0);
    assert_eq!(
        mask("SigIgn") & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored"
    );
    assert!(text(&out.stdout).ends_with("\ny\n"));
}

/// The mount namespaces this process holds descriptors of (`mnt:[inode]` links in
/// /proc/self/fd).
fn held_mount_namespaces() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|l| l.starts_with("mnt:["))
                .collect()
        })
        .unwrap_or_default()
}

/// Step 14 (docs/jail.md): the daemon holds the jail's mount namespace while the step runs, so
/// init's exit does not tear it down, and lets it go after the step (on a teardown thread).
#[test]
fn vm_step_14_mount_namespace_is_held_during_the_step_and_released_after() {
    if !privileged() {
        return;
    }
    // PIDFD_GET_MNT_NAMESPACE came with Linux 6.11; before it nothing is held (step 14).
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 11) {
        eprintln!(
            "skipped: kernel {} has no PIDFD_GET_MNT_NAMESPACE",
            release.trim()
        );
        return;
    }
    let b = Bench::new();
    let dir = b.run_dir(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let before = held_mount_namespaces();
    let (out, seen) = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let mut seen = BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.extend(held_mount_namespaces());
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        let out = b.spawn(
            &dir,
            0,
            &["/bin/sh", "-c", "readlink /proc/self/ns/mnt; sleep 0.3"],
            limits(),
            None,
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, w.join().unwrap())
    });
    assert_eq!(out.end, End::Exited(0), "{}", text(&out.stderr));
    let ns = text(&out.stdout).trim().to_owned();
    assert!(ns.starts_with("mnt:["), "{ns}");
    assert!(!before.contains(&ns));
    assert!(
        seen.contains(&ns),
        "the daemon never held the jail's mount namespace {ns} (saw {seen:?})"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while held_mount_namespaces().contains(&ns) {
        assert!(
            Instant::now() < deadline,
            "the jail's mount namespace {ns} is still held 5 s after the step"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished step wrote in its filesystems is released on a teardown thread (docs/jail.md,
/// "Teardown off the request path"); on a hybrid host it is charged to the slot's memory group,
/// which the next step reuses, so the next step waits for that release: right after a step that
/// left 40 MB in `/tmp` and `/dev/shm`, a step limited to 24 MB starts (its limit could not be
/// set below what the group holds) and can use it.
#[test]
fn vm_the_next_step_on_a_slot_gets_its_whole_memory_limit() {
    if !privileged() {
        return;
    }
    let b = Bench::new();
    let big = Limits {
        memory_bytes: 96 << 20,
        disk_bytes: 48 << 20,
        ..limits()
    };
    let small = Limits {
        memory_bytes: 24 << 20,
        ..limits()
    };
    let fill = "head -c 20000000 /dev/zero > /tmp/a && head -c 20000000 /dev/zero > /dev/shm/b";
    let use_it = "head -c 16000000 /dev/zero > /dev/shm/c && echo ok";
    for round in 0..10 {
        let dir = b.run_dir(0);
        let out = b.spawn(&dir, 0, &["/bin/sh", "-c", fill], big, None);
        assert_eq!(out.end, End::Exited(0), "fill: {}", text(&out.stderr));
        let out = b.spawn(&dir, 0, &["/bin/sh", "-c", use_it], small, None);
        assert_eq!(
            (out.end, text(&out.stdout)),
            (End::Exited(0), "ok\n".to_owned()),
            "round {round}: the step after one that filled its tmpfs: {}",
            text(&out.stderr)
        );
    }
}
