//! Seccomp policies: load the deny-lists in `profiles/seccomp/*.toml` and compile them to classic
//! BPF once, at start-up.
//!
//! Why not seccompiler: a denied syscall must be *reported with its name* (outcome 19), so denied
//! syscalls return `SECCOMP_RET_USER_NOTIF` and the daemon receives the syscall number on the
//! listener descriptor (see `Jail::spawn`). seccompiler has no user-notification action and no way
//! to reject the x32 ABI as a range; the program we need is a binary search over a sorted list of
//! syscall numbers, which is short enough to build and review here.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Errors loading a policy. Carried by `JailError`.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp policy {name}: cannot parse")]
    Parse {
        name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("seccomp policy {name}: unknown syscall '{syscall}'")]
    UnknownSyscall { name: String, syscall: String },
    #[error("seccomp policy {name}: syscall '{syscall}' has no reason")]
    NoReason { name: String, syscall: String },
    #[error("seccomp policy {name}: too many rules for 8-bit BPF jumps")]
    TooLarge { name: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    deny: BTreeMap<String, String>,
}

/// A compiled policy: the BPF program and the names of the denied syscalls by number.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Compiled once at start-up, shared by every spawn.
    pub program: std::sync::Arc<[libc::sock_filter]>,
    denied: BTreeMap<i32, &'static str>,
}

impl Policy {
    /// Parses and compiles a policy file's text.
    pub fn from_toml(name: &str, text: &str) -> Result<Policy, SeccompError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|source| SeccompError::Parse {
            name: name.to_owned(),
            source,
        })?;
        let mut denied = BTreeMap::new();
        for (syscall, why) in &raw.deny {
            if why.trim().is_empty() {
                return Err(SeccompError::NoReason {
                    name: name.to_owned(),
                    syscall: syscall.clone(),
                });
            }
            let (sname, nr) = SYSCALLS
                .iter()
                .map(|(n, nr)| (n.trim_start_matches("SYS_"), *nr))
                .find(|(n, _)| n == syscall)
                .ok_or_else(|| SeccompError::UnknownSyscall {
                    name: name.to_owned(),
                    syscall: syscall.clone(),
                })?;
            denied.insert(nr as i32, sname);
        }
        let program = compile(&denied.keys().copied().collect::<Vec<_>>()).ok_or_else(|| {
            SeccompError::TooLarge {
                name: name.to_owned(),
            }
        })?;
        Ok(Policy {
            name: name.to_owned(),
            program: program.into(),
            denied,
        })
    }

    /// The name of a syscall number, for the outcome-19 message.
    pub fn syscall_name(&self, nr: i32) -> String {
        if nr == libc::SYS_clone as i32 {
            return "clone (with namespace flags)".to_owned();
        }
        self.denied
            .get(&nr)
            .map_or_else(|| format!("syscall {nr}"), |n| (*n).to_owned())
    }

    /// Names of all denied syscalls, for `runner check`.
    pub fn denied_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.denied.values().copied()
    }
}

/// The policy shipped with the binary.
pub const DEFAULT_POLICY: &str = include_str!("../../../profiles/seccomp/default.toml");

// struct seccomp_data offsets (include/uapi/linux/seccomp.h).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16; // little endian: low 32 bits of args[0]

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

/// Syscall numbers at or above this are the x32 ABI on x86_64 (__X32_SYSCALL_BIT).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Namespace flags that clone() must not carry.
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Where a jump goes, resolved to a relative offset once the program is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    At(usize),
    Clone,
    Enosys,
    Notify,
    Kill,
}

/// What a syscall number leads to.
#[derive(Debug, Clone, Copy)]
enum Action {
    Notify,
    /// `clone`: its flags are checked.
    Clone,
    /// `clone3`: ENOSYS.
    Enosys,
}

#[derive(Debug, Clone, Copy)]
struct Ins {
    code: u32,
    k: u32,
    jt: To,
    jf: To,
}

/// Syscall numbers compared one after the other at a leaf of the search tree.
const LEAF: usize = 4;

/// Builds the filter. Layout (jumps are relative to the next instruction):
///
/// ```text
///   ld arch; jeq ARCH ? next : KILL
///   ld nr;  [x86_64: jge X32 ? KILL : next]
///   a binary search over the sorted numbers of the denied syscalls, clone and clone3:
///     jge n[mid] ? right half : left half, down to leaves of at most LEAF numbers:
///     jeq n[i] ? its action : next …; ret ALLOW
/// CLONE:  ld args[0]; jset NS_FLAGS ? NOTIFY : next; ret ALLOW
/// ENOSYS: ret ERRNO(ENOSYS)
/// NOTIFY: ret USER_NOTIF
/// KILL:   ret KILL_PROCESS
/// ```
///
/// A search rather than a list: the kernel runs a new filter over every syscall number when it
/// is installed (to cache the ones it always allows) and compiles it, both in proportion to the
/// comparisons on the way (docs/jail.md, "What each step costs").
fn compile(denied: &[i32]) -> Option<Vec<libc::sock_filter>> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let mut entries: Vec<(u32, Action)> = denied
        .iter()
        .map(|&nr| (nr as u32, Action::Notify))
        .chain([
            (libc::SYS_clone as u32, Action::Clone),
            (libc::SYS_clone3 as u32, Action::Enosys),
        ])
        .collect();
    entries.sort_by_key(|&(nr, _)| nr);
    entries.dedup_by_key(|&mut (nr, _)| nr);

    let ld = |off| Ins {
        code: BPF_LD | BPF_W | BPF_ABS,
        k: off,
        jt: To::Next,
        jf: To::Next,
    };
    let ret = |k| Ins {
        code: BPF_RET | BPF_K,
        k,
        jt: To::Next,
        jf: To::Next,
    };
    let jmp = |op, k, jt, jf| Ins {
        code: BPF_JMP | op | BPF_K,
        k,
        jt,
        jf,
    };
    let mut p = vec![
        ld(OFF_ARCH),
        jmp(BPF_JEQ, AUDIT_ARCH, To::Next, To::Kill),
        ld(OFF_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        p.push(jmp(BPF_JGE, X32_SYSCALL_BIT, To::Kill, To::Next));
    }
    fn tree(p: &mut Vec<Ins>, e: &[(u32, Action)]) {
        use libc::{BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_RET};
        if e.len() <= LEAF {
            for &(nr, act) in e {
                let to = match act {
                    Action::Notify => To::Notify,
                    Action::Clone => To::Clone,
                    Action::Enosys => To::Enosys,
                };
                p.push(Ins {
                    code: BPF_JMP | BPF_JEQ | BPF_K,
                    k: nr,
                    jt: to,
                    jf: To::Next,
                });
            }
            p.push(Ins {
                code: BPF_RET | BPF_K,
                k: RET_ALLOW,
                jt: To::Next,
                jf: To::Next,
            });
            return;
        }
        let (left, right) = e.split_at(e.len() / 2);
        let split = p.len();
        p.push(Ins {
            code: BPF_JMP | BPF_JGE | BPF_K,
            k: right[0].0,
            jt: To::Next, // patched below
            jf: To::Next,
        });
        tree(p, left);
        p[split].jt = To::At(p.len());
        tree(p, right);
    }
    tree(&mut p, &entries);
    let clone_at = p.len();
    p.push(ld(OFF_ARG0_LO));
    p.push(jmp(BPF_JSET, CLONE_NS_FLAGS, To::Notify, To::Next));
    p.push(ret(RET_ALLOW));
    let enosys_at = p.len();
    p.push(ret(RET_ENOSYS));
    let notify_at = p.len();
    p.push(ret(RET_NOTIFY));
    let kill_at = p.len();
    p.push(ret(RET_KILL));

    let resolve = |from: usize, to: To| -> Option<u8> {
        let target = match to {
            To::Next => return Some(0),
            To::At(i) => i,
            To::Clone => clone_at,
            To::Enosys => enosys_at,
            To::Notify => notify_at,
            To::Kill => kill_at,
        };
        u8::try_from(target.checked_sub(from + 1)?).ok()
    };
    p.iter()
        .enumerate()
        .map(|(i, ins)| {
            Some(libc::sock_filter {
                code: ins.code as u16,
                jt: resolve(i, ins.jt)?,
                jf: resolve(i, ins.jf)?,
                k: ins.k,
            })
        })
        .collect()
}

macro_rules! syscall_table {
    ($($name:ident),* $(,)?) => {
        /// The syscalls a policy may name, with their numbers on this architecture.
        const SYSCALLS: &[(&str, libc::c_long)] = &[$((stringify!($name), libc::$name)),*];
    };
}

// Names are the libc constants without the `SYS_` prefix (stripped below).
syscall_table!(
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_pidfd_getfd,
    SYS_kcmp,
    SYS_process_madvise,
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_move_mount,
    SYS_open_tree,
    SYS_fsopen,
    SYS_fsconfig,
    SYS_fsmount,
    SYS_fspick,
    SYS_mount_setattr,
    SYS_chroot,
    SYS_unshare,
    SYS_setns,
    SYS_bpf,
    SYS_perf_event_open,
    SYS_userfaultfd,
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register,
    SYS_open_by_handle_at,
    SYS_name_to_handle_at,
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    SYS_kexec_load,
    SYS_kexec_file_load,
    SYS_reboot,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_swapon,
    SYS_swapoff,
    SYS_acct,
    SYS_quotactl,
    SYS_syslog,
    SYS_settimeofday,
    SYS_clock_settime,
    SYS_clock_adjtime,
    SYS_adjtimex,
    SYS_iopl,
    SYS_ioperm,
    SYS_fanotify_init,
    SYS_vhangup,
    SYS_personality,
    SYS_lookup_dcookie,
);

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Parsing and program shape. That the filter really stops a
    //! syscall is proven by the privileged tests (tests/tests/jail_steps.rs), where the listener is
    //! exercised end to end.
    use super::*;

    fn names() -> Vec<&'static str> {
        SYSCALLS.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn test_table_names_have_no_prefix() {
        // stringify! keeps the SYS_ prefix; Policy::from_toml compares without it.
        assert!(names().iter().all(|n| n.starts_with("SYS_")));
    }

    #[test]
    fn test_default_policy_compiles() {
        let p = Policy::from_toml("default", DEFAULT_POLICY).expect("default policy");
        assert!(p.denied_names().any(|n| n == "ptrace"));
        assert_eq!(p.syscall_name(libc::SYS_bpf as i32), "bpf");
        // Last four instructions are the fixed returns.
        let n = p.program.len();
        assert_eq!(p.program[n - 1].k, RET_KILL);
        assert_eq!(p.program[n - 2].k, RET_NOTIFY);
        assert_eq!(p.program[n - 3].k, RET_ENOSYS);
    }

    #[test]
    fn test_unknown_syscall_rejected() {
        let err = Policy::from_toml("t", "[deny]\nnot_a_syscall = \"x\"\n").unwrap_err();
        assert!(matches!(err, SeccompError::UnknownSyscall { .. }));
    }

    #[test]
    fn test_rule_without_reason_rejected() {
        let err = Policy::from_toml("t", "[deny]\nptrace = \" \"\n").unwrap_err();
        assert!(matches!(err, SeccompError::NoReason { .. }));
    }

    /// Runs a compiled program (the few classic BPF instructions `compile` emits) on a syscall.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = match ins.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        OFF_ARG0_LO => arg0,
                        k => panic!("load of offset {k}"),
                    }
                }
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                c => {
                    let taken = match c & !(libc::BPF_JMP | libc::BPF_K) {
                        libc::BPF_JEQ => acc == ins.k,
                        libc::BPF_JGE => acc >= ins.k,
                        libc::BPF_JSET => acc & ins.k != 0,
                        op => panic!("unexpected op {op:#x}"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
        }
    }

    #[test]
    fn test_every_syscall_number_gets_its_action() {
        let p = Policy::from_toml("default", DEFAULT_POLICY).expect("default policy");
        let denied: Vec<u32> = p.denied.keys().map(|&n| n as u32).collect();
        assert!(denied.len() > 20);
        for nr in 0..1024u32 {
            let want = if denied.contains(&nr) {
                RET_NOTIFY
            } else if nr == libc::SYS_clone3 as u32 {
                RET_ENOSYS
            } else {
                RET_ALLOW
            };
            assert_eq!(run(&p.program, AUDIT_ARCH, nr, 0), want, "syscall {nr}");
        }
        let clone = libc::SYS_clone as u32;
        assert_eq!(
            run(&p.program, AUDIT_ARCH, clone, libc::SIGCHLD as u32),
            RET_ALLOW
        );
        for flag in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET] {
            assert_eq!(run(&p.program, AUDIT_ARCH, clone, flag as u32), RET_NOTIFY);
        }
        assert_eq!(run(&p.program, 0x4000_0003, 1, 0), RET_KILL);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                run(&p.program, AUDIT_ARCH, X32_SYSCALL_BIT | 1, 0),
                RET_KILL
            );
        }
        // A search: no syscall goes through more than a few comparisons.
        assert!(
            p.program.len() < 2 * denied.len() + 24,
            "{}",
            p.program.len()
        );
    }

    #[test]
    fn test_empty_and_tiny_policies() {
        for text in ["[deny]\n", "[deny]\nptrace = \"x\"\n"] {
            let p = Policy::from_toml("t", text).expect("policy");
            assert_eq!(
                run(&p.program, AUDIT_ARCH, libc::SYS_read as u32, 0),
                RET_ALLOW
            );
            assert_eq!(
                run(&p.program, AUDIT_ARCH, libc::SYS_clone3 as u32, 0),
                RET_ENOSYS
            );
        }
    }

    #[test]
    fn test_jumps_land_on_notify() {
        let p = Policy::from_toml("t", "[deny]\nptrace = \"x\"\nbpf = \"y\"\n").unwrap();
        let notify = p.program.len() - 2;
        for (i, ins) in p.program.iter().enumerate() {
            if ins.code == (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16
                && (ins.k == libc::SYS_ptrace as u32 || ins.k == libc::SYS_bpf as u32)
            {
                assert_eq!(i + 1 + usize::from(ins.jt), notify);
            }
        }
    }
}
