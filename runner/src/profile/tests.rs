//! Tier: unit + toolchain (docs/testing.md). Schema, planning, word splitting, limits, cmpinfo,
//! stderr filter and detection with a fake probe (unit); the `#[ignore]`d tests run the shipped
//! profiles with the host's toolchains (toolchain).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::plan::{
    CmpinfoRule, CompileCpuBound, DeferredCheck, Limits, Pattern, Plan, RunEvidence, StderrFilter,
};
use super::*;
use crate::job::{Job, JobFile, Params};

const RUN_DIR: &str = "/home/jobe/runs/jobe_ab12cd";

fn profile(id: &str) -> Profile {
    embedded_profiles()
        .expect("shipped profiles are valid")
        .into_iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no shipped profile {id}"))
}

fn job(lang: &str, source_name: Option<&str>) -> Job {
    Job {
        language: lang.to_owned(),
        source: "code\n".to_owned(),
        source_name: source_name.map(str::to_owned),
        input: String::new(),
        files: Vec::new(),
        params: Params::default(),
        debug: false,
        details: false,
    }
}

fn plan_with(lang: &str, source_name: Option<&str>, params: Params) -> Result<Plan, PlanError> {
    let mut j = job(lang, source_name);
    j.params = params;
    profile(lang).plan(&j, &PlanConfig::default(), RUN_DIR)
}

fn plan(lang: &str, source_name: Option<&str>) -> Plan {
    plan_with(lang, source_name, Params::default()).expect("plan")
}

fn compile_argv(p: &Plan) -> Vec<&str> {
    p.compile
        .as_ref()
        .expect("has a compile step")
        .argv
        .iter()
        .map(String::as_str)
        .collect()
}

fn run_argv(p: &Plan) -> Vec<&str> {
    p.run.argv.iter().map(String::as_str).collect()
}

fn strs(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| (*s).to_owned()).collect())
}

fn file_names(p: &Plan) -> Vec<&str> {
    p.files.iter().map(|(n, _)| n.as_str()).collect()
}

// ---------------------------------------------------------------- shipped profiles

#[test]
fn test_every_shipped_profile_parses_and_validates() {
    let profiles = embedded_profiles().expect("valid");
    let ids: Vec<&str> = profiles.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "c", "cpp", "java", "nodejs", "octave", "pascal", "php", "python3"
        ]
    );
    for p in &profiles {
        assert!(p.version_command[0].starts_with("/usr/bin/"), "{}", p.id);
        assert_eq!(p.seccomp, "default");
    }
}

#[test]
fn test_profiles_dir_matches_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let from_dir = dir_profiles(&dir).expect("profiles/ loads");
    let embedded = embedded_profiles().expect("valid");
    let ids = |v: &[Profile]| v.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&from_dir),
        ids(&embedded),
        "EMBEDDED must list every profiles/*.toml"
    );
}

// ---------------------------------------------------------------- argv per language, defaults

#[test]
fn test_c_defaults() {
    let p = plan("c", None);
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/gcc",
            "-Wall",
            "-Werror",
            "-std=c99",
            "-x",
            "c",
            "-o",
            "prog.c.exe",
            "prog.c"
        ]
    );
    assert_eq!(run_argv(&p), ["./prog.c.exe"]);
    assert_eq!(
        p.cmpinfo,
        CmpinfoRule::Stderr {
            stdout_separator: None
        }
    );
    assert_eq!(file_names(&p), ["prog.c"]);
}

#[test]
fn test_c_tester_name_and_linkargs() {
    let p = plan_with(
        "c",
        Some("__tester__.c"),
        Params {
            linkargs: strs(&["-lm"]),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/gcc",
            "-Wall",
            "-Werror",
            "-std=c99",
            "-x",
            "c",
            "-o",
            "__tester__.c.exe",
            "__tester__.c",
            "-lm"
        ]
    );
    assert_eq!(run_argv(&p), ["./__tester__.c.exe"]);
}

#[test]
fn test_c_compileargs_replace_and_split() {
    let p = plan_with(
        "c",
        Some("__tester__.c"),
        Params {
            compileargs: strs(&["-std=c11 -O2", "-DMSG='hello world'"]),
            interpreterargs: strs(&["a"]),
            runargs: strs(&["seed=123", "username='o'\\''brien'"]),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/gcc",
            "-std=c11",
            "-O2",
            "-DMSG=hello world",
            "-o",
            "__tester__.c.exe",
            "__tester__.c"
        ]
    );
    assert_eq!(
        run_argv(&p),
        ["./__tester__.c.exe", "a", "seed=123", "username=o'brien"]
    );
}

#[test]
fn test_c_source_name_with_spaces_stays_one_argument() {
    let p = plan("c", Some("my prog.c"));
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/gcc",
            "-Wall",
            "-Werror",
            "-std=c99",
            "-x",
            "c",
            "-o",
            "my prog.c.exe",
            "my prog.c"
        ]
    );
    assert_eq!(run_argv(&p), ["./my prog.c.exe"]);
    assert_eq!(file_names(&p), ["my prog.c"]);
}

#[test]
fn test_cpp_argv() {
    let p = plan("cpp", None);
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/g++",
            "-Wall",
            "-Werror",
            "-o",
            "prog.cpp.exe",
            "prog.cpp"
        ]
    );
    assert_eq!(run_argv(&p), ["./prog.cpp.exe"]);
    let p = plan_with(
        "cpp",
        Some("__tester__.cpp"),
        Params {
            compileargs: strs(&[]),
            linkargs: strs(&["-lm", "-lpthread"]),
            runargs: strs(&["\"two words\""]),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/g++",
            "-o",
            "__tester__.cpp.exe",
            "__tester__.cpp",
            "-lm",
            "-lpthread"
        ]
    );
    assert_eq!(run_argv(&p), ["./__tester__.cpp.exe", "two words"]);
}

#[test]
fn test_python3_argv_env_and_cmpinfo() {
    let p = plan("python3", None);
    assert_eq!(
        compile_argv(&p),
        ["/usr/bin/python3", "-m", "py_compile", "prog.py"]
    );
    assert_eq!(run_argv(&p), ["/usr/bin/python3", "-BE", "prog.py"]);
    assert_eq!(
        p.cmpinfo,
        CmpinfoRule::Stderr {
            stdout_separator: Some("\\n".to_owned())
        }
    );
    let p = plan_with(
        "python3",
        Some("__tester__.python3"),
        Params {
            interpreterargs: strs(&["-I"]),
            runargs: strs(&["x y", "'a b'"]),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(
        compile_argv(&p),
        ["/usr/bin/python3", "-m", "py_compile", "__tester__.python3"]
    );
    assert_eq!(
        run_argv(&p),
        [
            "/usr/bin/python3",
            "-I",
            "__tester__.python3",
            "x",
            "y",
            "a b"
        ]
    );
    let env = &p.run.env;
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("MPLCONFIGDIR"), Some(RUN_DIR));
    assert_eq!(get("HOME"), Some(RUN_DIR));
    assert_eq!(get("PATH"), Some("/usr/local/bin:/usr/bin:/bin"));
    assert_eq!(get("LANG"), Some("C.UTF-8"));
    assert_eq!(get("TMPDIR"), Some(RUN_DIR));
    assert_eq!(get("OPENBLAS_NUM_THREADS"), Some("4"));
    assert_eq!(p.compile.as_ref().expect("compile").env, p.run.env);
}

#[test]
fn test_java_argv_defaults() {
    let p = plan("java", Some("Main.java"));
    assert_eq!(compile_argv(&p), ["/usr/bin/javac", "Main.java"]);
    assert_eq!(
        run_argv(&p),
        ["/usr/bin/java", "-Xrs", "-Xss8m", "-Xmx200m", "Main"]
    );
    assert_eq!(file_names(&p), ["Main.java"]);
}

#[test]
fn test_java_args_and_main_class() {
    let p = plan_with(
        "java",
        Some("Main.java"),
        Params {
            compileargs: strs(&["-Xlint:all -encoding UTF-8"]),
            interpreterargs: strs(&["-Xmx500m"]),
            runargs: strs(&["in.txt"]),
            main_class: Some("pkg.Other".to_owned()),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/javac",
            "-Xlint:all",
            "-encoding",
            "UTF-8",
            "Main.java"
        ]
    );
    assert_eq!(
        run_argv(&p),
        ["/usr/bin/java", "-Xmx500m", "pkg.Other", "in.txt"]
    );
}

#[test]
fn test_java_class_detection() {
    let java = profile("java");
    let mut j = job("java", None);
    j.source = "import java.util.*;\npublic class Hello {\n  public static void main(String[] args) {}\n}\n"
        .to_owned();
    assert_eq!(java.source_name(&j), "Hello.java");
    let p = java
        .plan(&j, &PlanConfig::default(), RUN_DIR)
        .expect("plan");
    assert_eq!(compile_argv(&p), ["/usr/bin/javac", "Hello.java"]);
    assert_eq!(
        run_argv(&p),
        ["/usr/bin/java", "-Xrs", "-Xss8m", "-Xmx200m", "Hello"]
    );

    // `static public` order, class with extends.
    j.source = "public class A extends B {\n static public void main (String x[]) {}\n}".to_owned();
    assert_eq!(java.source_name(&j), "A.java");

    // Zero matches: no public class with main.
    j.source = "class Foo { public static void main(String[] a) {} }".to_owned();
    assert_eq!(java.source_name(&j), "prog.java");
    let p = java
        .plan(&j, &PlanConfig::default(), RUN_DIR)
        .expect("plan");
    assert_eq!(run_argv(&p).last(), Some(&"prog"));

    // Two matches: ambiguous, the default.
    j.source = "public class A { public static void main(String[] a) {} }\n\
                public class B { public static void main(String[] a) {} }"
        .to_owned();
    assert_eq!(java.source_name(&j), "prog.java");

    // A client-supplied name always wins.
    j.source_name = Some("NO_PUBLIC_CLASS_FOUND.java".to_owned());
    assert_eq!(java.source_name(&j), "NO_PUBLIC_CLASS_FOUND.java");
}

#[test]
fn test_nodejs_argv_and_copy() {
    let p = plan("nodejs", None);
    assert!(p.compile.is_none());
    assert_eq!(run_argv(&p), ["/usr/bin/node", "--use_strict", "prog.js"]);
    assert_eq!(file_names(&p), ["prog.js", "prog.js.js"]);
    assert_eq!(p.files[1].1, b"code\n");
    let p = plan_with(
        "nodejs",
        Some("__tester__.nodejs"),
        Params {
            interpreterargs: strs(&[]),
            runargs: strs(&["--flag=\"a b\""]),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(
        run_argv(&p),
        ["/usr/bin/node", "__tester__.nodejs", "--flag=a b"]
    );
    assert_eq!(
        file_names(&p),
        ["__tester__.nodejs", "__tester__.nodejs.js"]
    );
}

#[test]
fn test_php_argv_and_cmpinfo() {
    let p = plan("php", Some("__tester__.php"));
    assert_eq!(compile_argv(&p), ["/usr/bin/php", "-l", "__tester__.php"]);
    assert_eq!(
        run_argv(&p),
        ["/usr/bin/php", "--no-php-ini", "__tester__.php"]
    );
    assert_eq!(
        p.cmpinfo,
        CmpinfoRule::Stderr {
            stdout_separator: Some("\n".to_owned())
        }
    );
    let p = plan_with(
        "php",
        None,
        Params {
            interpreterargs: strs(&["-d memory_limit=-1"]),
            runargs: strs(&["1", "2"]),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(
        run_argv(&p),
        [
            "/usr/bin/php",
            "-d",
            "memory_limit=-1",
            "prog.php",
            "1",
            "2"
        ]
    );
}

#[test]
fn test_pascal_argv_and_cmpinfo() {
    let p = plan("pascal", None);
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/fpc",
            "-vew",
            "-Se",
            "-Feprog.pas.err",
            "-oprog.pas.exe",
            "prog.pas"
        ]
    );
    assert_eq!(run_argv(&p), ["./prog.pas.exe"]);
    assert_eq!(
        p.cmpinfo,
        CmpinfoRule::FileUnlessExists {
            file: "prog.pas.err".to_owned(),
            unless_exists: "prog.pas.exe".to_owned()
        }
    );
    let p = plan_with(
        "pascal",
        Some("__tester__.pascal"),
        Params {
            compileargs: strs(&["-O2"]),
            linkargs: strs(&["-lm"]),
            runargs: strs(&["x"]),
            ..Params::default()
        },
    )
    .expect("plan");
    // linkargs are not used for pascal, as on Jobe.
    assert_eq!(
        compile_argv(&p),
        [
            "/usr/bin/fpc",
            "-O2",
            "-Fe__tester__.pascal.err",
            "-o__tester__.pascal.exe",
            "__tester__.pascal"
        ]
    );
    assert_eq!(run_argv(&p), ["./__tester__.pascal.exe", "x"]);
}

#[test]
fn test_octave_argv_copy_and_filter() {
    let p = plan("octave", Some("prog"));
    assert!(p.compile.is_none());
    assert_eq!(
        run_argv(&p),
        [
            "/usr/bin/octave",
            "--norc",
            "--no-window-system",
            "--silent",
            "-H",
            "prog"
        ]
    );
    assert_eq!(file_names(&p), ["prog", "prog.m"]);
    assert!(p.stderr_filter.strip_cr && p.stderr_filter.trim_trailing_blank_lines);
    assert_eq!(p.stderr_filter.drop_final_line.len(), 2);
    let p = plan("octave", Some("__tester__.octave"));
    assert_eq!(file_names(&p), ["__tester__.octave", "__tester__.octave.m"]);
}

// ---------------------------------------------------------------- word splitting

#[test]
fn test_split_args_shell_rules() {
    let s = |v: &[&str]| split_args("runargs", &strs(v).expect("some"));
    assert_eq!(s(&["-x c"]).expect("ok"), ["-x", "c"]);
    assert_eq!(
        s(&["username='o'\\''brien'"]).expect("ok"),
        ["username=o'brien"]
    );
    assert_eq!(
        s(&["a\\ b", "\"c \\\"d\\\"\""]).expect("ok"),
        ["a b", "c \"d\""]
    );
    // No expansion: $, backquotes and globs are literal.
    assert_eq!(
        s(&["$HOME", "`id`", "*.c", "~"]).expect("ok"),
        ["$HOME", "`id`", "*.c", "~"]
    );
    // Empty list and empty strings give no words.
    assert_eq!(s(&[]).expect("ok"), Vec::<String>::new());
    assert_eq!(s(&["", "  "]).expect("ok"), Vec::<String>::new());
    // An empty quoted string is one empty argument, as in sh.
    assert_eq!(s(&["''"]).expect("ok"), [""]);
}

#[test]
fn test_unbalanced_quotes_are_a_client_error() {
    let err = split_args("runargs", &strs(&["it's"]).expect("some")).expect_err("unbalanced");
    assert_eq!(
        err,
        PlanError::UnbalancedQuotes {
            param: "runargs",
            joined: "it's".to_owned()
        }
    );
    assert!(
        err.to_string().contains("runargs has an unbalanced quote"),
        "{err}"
    );
    let err = plan_with(
        "c",
        None,
        Params {
            compileargs: strs(&["-DX=\"a"]),
            ..Params::default()
        },
    )
    .expect_err("unbalanced");
    assert!(matches!(
        err,
        PlanError::UnbalancedQuotes {
            param: "compileargs",
            ..
        }
    ));
}

// ---------------------------------------------------------------- limits

fn limits(cpu: f64, wall: f64, mem_mb: u64, disk_mb: u64, stream_mb: u64, procs: u32) -> Limits {
    Limits {
        cpu: Duration::from_secs_f64(cpu),
        wall: Duration::from_secs_f64(wall),
        memory_bytes: mem_mb * 1_024_000,
        disk_bytes: disk_mb * 1_024_000,
        stream_bytes: stream_mb * 1_024_000,
        procs,
        address_space_bytes: None,
    }
}

/// `l` for a profile with `limit_address_space`: RLIMIT_AS = the memory limit.
fn native(l: Limits) -> Limits {
    Limits {
        address_space_bytes: Some(l.memory_bytes),
        ..l
    }
}

#[test]
fn test_default_limits() {
    let p = plan("python3", None);
    assert_eq!(p.run.limits, limits(5.0, 10.0, 1000, 20, 2, 30));
    // Compile minima: memory 500 is below 1000, so unchanged; numprocs raised to... 30 ≥ 5.
    assert_eq!(
        p.compile.expect("compile").limits,
        limits(5.0, 10.0, 1000, 20, 2, 30)
    );
    let p = plan("c", None);
    assert_eq!(p.run.limits, native(limits(5.0, 10.0, 400, 20, 2, 30)));
    // The compile step's memory is raised to Jobe's minimum 500.
    assert_eq!(
        p.compile.expect("compile").limits,
        native(limits(5.0, 10.0, 500, 20, 2, 30))
    );
    assert_eq!(
        plan("nodejs", None).run.limits,
        limits(5.0, 10.0, 1000, 20, 2, 30)
    );
    assert_eq!(
        plan("octave", None).run.limits,
        limits(5.0, 10.0, 500, 20, 2, 30)
    );
    assert_eq!(
        plan("php", None).run.limits,
        limits(5.0, 10.0, 400, 20, 2, 30)
    );
    assert_eq!(
        plan("java", None).run.limits,
        limits(5.0, 10.0, 1000, 20, 2, 256)
    );
}

#[test]
fn test_requested_limits_and_units() {
    let p = plan_with(
        "c",
        None,
        Params {
            cputime: Some(1.5),
            memorylimit: Some(64.0),
            disklimit: Some(1.0),
            streamsize: Some(1.0),
            numprocs: Some(3.0),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(p.run.limits, native(limits(1.5, 3.0, 64, 1, 1, 3)));
    assert_eq!(p.run.limits.stream_bytes, 1_024_000);
    // Compile minima: cputime 2, memory 500, disk 20, numprocs 5; wall = 2 × effective cputime.
    assert_eq!(
        p.compile.expect("compile").limits,
        native(limits(2.0, 4.0, 500, 20, 1, 5))
    );
}

/// Jobe's address-space limit (RLIMIT_AS = memorylimit) is data of the profiles: on for the
/// native-code languages, off for the runtimes that reserve address ranges they never touch.
#[test]
fn test_address_space_limit_is_the_native_profiles_only() {
    for p in embedded_profiles().expect("profiles") {
        let native_code = ["c", "cpp", "pascal"].contains(&p.id.as_str());
        assert_eq!(p.limit_address_space, native_code, "{}", p.id);
        let plan = plan(&p.id, None);
        let want = |l: &Limits| native_code.then_some(l.memory_bytes);
        assert_eq!(
            plan.run.limits.address_space_bytes,
            want(&plan.run.limits),
            "{}",
            p.id
        );
        if let Some(c) = &plan.compile {
            assert_eq!(c.limits.address_space_bytes, want(&c.limits), "{}", p.id);
        }
    }
    let bad = "id = \"x\"\nversion_command = [\"/bin/true\"]\nversion_regex = '(.*)'\n\
               default_source_name = \"x\"\nlimit_address_space = \"yes\"\n[run]\nargv = [\"x\"]\n";
    assert!(Profile::from_toml("x.toml", bad).is_err(), "a boolean");
}

#[test]
fn test_limits_clamped_to_maxima() {
    let p = plan_with(
        "php",
        None,
        Params {
            memorylimit: Some(500_000.0),
            disklimit: Some(1e6),
            streamsize: Some(1000.0),
            numprocs: Some(10_000.0),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(p.run.limits, limits(5.0, 10.0, 4000, 200, 20, 200));
    assert_eq!(
        p.compile.expect("compile").limits,
        limits(5.0, 10.0, 4000, 200, 20, 200)
    );
}

#[test]
fn test_zero_memory_and_minus_one_disk_mean_maximum() {
    let p = plan_with(
        "c",
        None,
        Params {
            memorylimit: Some(0.0),
            disklimit: Some(-1.0),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(p.run.limits.memory_bytes, 4000 * 1_024_000);
    assert_eq!(p.run.limits.disk_bytes, 200 * 1_024_000);
    let c = p.compile.expect("compile").limits;
    assert_eq!(c.memory_bytes, 4000 * 1_024_000);
    assert_eq!(c.disk_bytes, 200 * 1_024_000);
    // Disk 0 stays 0 even for the compile step (Jobe: minima do not apply to 0).
    let p = plan_with(
        "c",
        None,
        Params {
            disklimit: Some(0.0),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(p.compile.expect("compile").limits.disk_bytes, 0);
}

#[test]
fn test_java_minima() {
    let p = plan_with(
        "java",
        None,
        Params {
            memorylimit: Some(50.0),
            numprocs: Some(10.0),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(p.run.limits.memory_bytes, 1000 * 1_024_000);
    assert_eq!(p.run.limits.procs, 256);
    // CodeRunner's java prototypes send 2000: honoured.
    let p = plan_with(
        "java",
        None,
        Params {
            memorylimit: Some(2000.0),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(p.run.limits.memory_bytes, 2000 * 1_024_000);
}

#[test]
fn test_wall_factor_and_cputime_max_from_config() {
    let cfg = PlanConfig {
        cputime_max_secs: 30.0,
        wall_factor: 3.0,
    };
    let mut j = job("c", None);
    j.params.cputime = Some(10.0);
    let p = profile("c").plan(&j, &cfg, RUN_DIR).expect("plan");
    assert_eq!(p.run.limits.wall, Duration::from_secs(30));
    j.params.cputime = Some(31.0);
    let err = profile("c").plan(&j, &cfg, RUN_DIR).expect_err("too large");
    assert_eq!(
        err.to_string(),
        "cputime exceeds maximum allowed on this Jobe server (30 secs)"
    );
}

#[test]
fn test_limit_errors() {
    let err = |params: Params| {
        plan_with("c", None, params)
            .expect_err("must fail")
            .to_string()
    };
    assert_eq!(
        err(Params {
            cputime: Some(121.0),
            ..Params::default()
        }),
        "cputime exceeds maximum allowed on this Jobe server (120 secs)"
    );
    // Jobe checks only intval(cputime).
    assert!(
        plan_with(
            "c",
            None,
            Params {
                cputime: Some(120.5),
                ..Params::default()
            }
        )
        .is_ok()
    );
    let msg = err(Params {
        cputime: Some(0.0),
        ..Params::default()
    });
    assert!(
        msg.contains("cputime") && msg.contains("greater than 0"),
        "{msg}"
    );
    let msg = err(Params {
        cputime: Some(-5.0),
        ..Params::default()
    });
    assert!(msg.contains("cputime") && msg.contains("-5"), "{msg}");
    let msg = err(Params {
        numprocs: Some(0.0),
        ..Params::default()
    });
    assert_eq!(
        msg,
        "invalid numprocs parameter: must be at least 1 (got 0)"
    );
    let msg = err(Params {
        memorylimit: Some(-1.0),
        ..Params::default()
    });
    assert!(msg.starts_with("invalid memorylimit parameter"), "{msg}");
    let msg = err(Params {
        streamsize: Some(-2.0),
        ..Params::default()
    });
    assert!(msg.starts_with("invalid streamsize parameter"), "{msg}");
    let msg = err(Params {
        disklimit: Some(-2.0),
        ..Params::default()
    });
    assert!(msg.starts_with("invalid disklimit parameter"), "{msg}");
    let msg = err(Params {
        memorylimit: Some(f64::INFINITY),
        ..Params::default()
    });
    assert!(msg.contains("finite"), "{msg}");
}

// ---------------------------------------------------------------- files, stdin

#[test]
fn test_files_and_clash() {
    let mut j = job("python3", Some("__tester__.python3"));
    j.files = vec![JobFile {
        name: "data.txt".to_owned(),
        contents: b"1 2".to_vec(),
    }];
    let p = profile("python3")
        .plan(&j, &PlanConfig::default(), RUN_DIR)
        .expect("plan");
    assert_eq!(
        p.files,
        vec![
            ("__tester__.python3".to_owned(), b"code\n".to_vec()),
            ("data.txt".to_owned(), b"1 2".to_vec())
        ]
    );
    j.files[0].name = "__tester__.python3".to_owned();
    let err = profile("python3")
        .plan(&j, &PlanConfig::default(), RUN_DIR)
        .expect_err("clash");
    assert_eq!(
        err,
        PlanError::FileNameClash {
            name: "__tester__.python3".to_owned()
        }
    );
    assert!(
        err.to_string().contains("same name as the program"),
        "{err}"
    );
    // Also with the copy written for nodejs.
    let mut j = job("nodejs", None);
    j.files = vec![JobFile {
        name: "prog.js.js".to_owned(),
        contents: Vec::new(),
    }];
    assert!(
        profile("nodejs")
            .plan(&j, &PlanConfig::default(), RUN_DIR)
            .is_err()
    );
}

#[test]
fn test_stdin_quirk() {
    let mut j = job("python3", None);
    let py = profile("python3");
    let cfg = PlanConfig::default();
    assert_eq!(py.plan(&j, &cfg, RUN_DIR).expect("plan").stdin, None);
    j.input = "0".to_owned();
    assert_eq!(py.plan(&j, &cfg, RUN_DIR).expect("plan").stdin, None);
    j.input = "0\n".to_owned();
    assert_eq!(
        py.plan(&j, &cfg, RUN_DIR).expect("plan").stdin,
        Some(b"0\n".to_vec())
    );
}

// ---------------------------------------------------------------- cmpinfo and stderr filter

#[test]
fn test_cmpinfo_rules() {
    let none = |_: &str| None;
    let plain = CmpinfoRule::Stderr {
        stdout_separator: None,
    };
    assert_eq!(cmpinfo(&plain, b"out", b"err", none), b"err");
    let py = profile("python3").cmpinfo;
    assert_eq!(cmpinfo(&py, b"out", b"err", none), b"out\\nerr");
    assert_eq!(cmpinfo(&py, b"", b"err", none), b"err");
    assert_eq!(cmpinfo(&py, b"out", b"", none), b"");
    let php = profile("php").cmpinfo;
    assert_eq!(
        cmpinfo(&php, b"Errors parsing", b"PHP Parse error", none),
        b"Errors parsing\nPHP Parse error"
    );

    let pas = plan("pascal", None).cmpinfo;
    let files = |exe: bool, err: &'static [u8]| {
        move |name: &str| match name {
            "prog.pas.exe" if exe => Some(b"ELF".to_vec()),
            "prog.pas.err" => Some(err.to_vec()),
            _ => None,
        }
    };
    assert_eq!(cmpinfo(&pas, b"out", b"", files(true, b"warning")), b"");
    assert_eq!(
        cmpinfo(&pas, b"out", b"", files(false, b"prog.pas(1,1) Fatal")),
        b"prog.pas(1,1) Fatal"
    );
    // No .err content: fall back to what the compiler printed.
    assert_eq!(cmpinfo(&pas, b"out", b"err", files(false, b"")), b"err");
    assert_eq!(cmpinfo(&pas, b"out", b"", files(false, b"")), b"out");
}

#[test]
fn test_octave_stderr_filter() {
    let f = profile("octave").stderr_filter;
    assert_eq!(
        filter_stderr(
            &f,
            b"error: x undefined\r\nerror: ignoring octave_execution_exception while x\n\n\n"
                .to_vec()
        ),
        b"error: x undefined\n"
    );
    assert_eq!(
        filter_stderr(
            &f,
            b"warning: w\nerror: No such file or directory\n".to_vec()
        ),
        b"warning: w\n"
    );
    // Both artefact lines, in Jobe's order.
    assert_eq!(
        filter_stderr(
            &f,
            b"oops\nerror: No such file or directory\nerror: ignoring octave_execution_exception\n"
                .to_vec()
        ),
        b"oops\n"
    );
    // Only the exact line for the second rule.
    assert_eq!(
        filter_stderr(&f, b"error: No such file or directory: a.txt\n".to_vec()),
        b"error: No such file or directory: a.txt\n"
    );
    assert_eq!(filter_stderr(&f, b"\r\n\n  \n".to_vec()), b"");
    assert_eq!(filter_stderr(&f, Vec::new()), b"");
    assert_eq!(filter_stderr(&f, b"no newline".to_vec()), b"no newline\n");
    // The default filter is the identity.
    let id = StderrFilter::default();
    assert_eq!(filter_stderr(&id, b"a\r\n\n".to_vec()), b"a\r\n\n");
}

// ---------------------------------------------------------------- detection, registry

#[test]
fn test_detection_leaves_out_missing_toolchain() {
    let calls = Mutex::new(Vec::new());
    let probe = |argv: &[String]| -> Result<String, ProbeError> {
        calls.lock().expect("lock").push(argv[0].clone());
        match argv[0].as_str() {
            "/usr/bin/gcc" => Ok("gcc (Debian 12.2.0-14) 12.2.0\nCopyright".to_owned()),
            "/usr/bin/python3" => Ok("Python 3.11.2\n".to_owned()),
            "/usr/bin/java" => Ok("openjdk version \"17.0.13\" 2024-10-15\n".to_owned()),
            "/usr/bin/node" => Ok("something odd\n".to_owned()),
            "/usr/bin/php" => Err(ProbeError::Failed {
                status: "exit status: 1".to_owned(),
            }),
            "/usr/bin/fpc" => Err(ProbeError::Empty),
            _ => Err(ProbeError::Spawn {
                program: argv[0].clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    };
    let reg = Registry::from_profiles(embedded_profiles().expect("valid"), &probe);
    assert_eq!(calls.lock().expect("lock").len(), 8);
    assert_eq!(
        reg.languages(),
        vec![
            ("c".to_owned(), "12.2.0".to_owned()),
            ("cpp".to_owned(), "12.2.0".to_owned()),
            ("java".to_owned(), "17.0.13".to_owned()),
            ("nodejs".to_owned(), "Unknown".to_owned()),
            ("python3".to_owned(), "3.11.2".to_owned()),
        ]
    );
    assert!(reg.get("c").is_some());
    assert!(reg.get("octave").is_none());
    assert!(reg.get("php").is_none());
}

#[test]
fn test_host_probe_real_commands() {
    // Uses only coreutils-level programs that every test machine has.
    let out = HostProbe.probe(&[
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        "echo out; echo err >&2".to_owned(),
    ]);
    let out = out.expect("sh works");
    assert!(
        out.contains("out") && out.contains("err"),
        "stderr is merged: {out:?}"
    );
    let err = HostProbe
        .probe(&["/bin/sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()])
        .expect_err("non-zero exit");
    assert!(matches!(err, ProbeError::Failed { .. }), "{err}");
    let err = HostProbe
        .probe(&["/bin/true".to_owned()])
        .expect_err("empty output");
    assert!(matches!(err, ProbeError::Empty), "{err}");
    let err = HostProbe
        .probe(&["/nonexistent/toolchain".to_owned()])
        .expect_err("missing");
    assert!(matches!(err, ProbeError::Spawn { .. }), "{err}");
}

#[test]
fn test_load_dir_overrides_and_extends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = include_str!("../../../profiles/c.toml").replace("cputime = 5", "cputime = 7");
    std::fs::write(dir.path().join("c.toml"), c).expect("write");
    let extra = "id = \"bash\"\nversion_command = [\"/bin/bash\", \"--version\"]\n\
                 version_regex = 'version ([0-9.]+)'\ndefault_source_name = \"prog.sh\"\n\
                 [run]\nargv = [\"/bin/bash\", \"{src}\", \"{runargs}\"]\n";
    std::fs::write(dir.path().join("bash.toml"), extra).expect("write");
    let merged = merge(
        embedded_profiles().expect("valid"),
        dir_profiles(dir.path()).expect("dir"),
    );
    assert_eq!(merged.len(), 9);
    let c = merged.iter().find(|p| p.id == "c").expect("c");
    assert_eq!(c.params.cputime, 7.0);
    let bash = merged.iter().find(|p| p.id == "bash").expect("bash");
    // Omitted params take Jobe's global defaults.
    assert_eq!(bash.params, ParamDefaults::default());
    let p = bash
        .plan(&job("bash", None), &PlanConfig::default(), RUN_DIR)
        .expect("plan");
    assert_eq!(run_argv(&p), ["/bin/bash", "prog.sh"]);

    // A file not named after its id is rejected.
    std::fs::write(dir.path().join("other.toml"), extra).expect("write");
    let err = dir_profiles(dir.path()).expect_err("misnamed");
    assert!(err.to_string().contains("other.toml"), "{err}");
}

// ---------------------------------------------------------------- deferred check

/// Whether `job` in `lang` gets the deferred order.
fn defers(lang: &str, j: &Job) -> bool {
    profile(lang)
        .plan(j, &PlanConfig::default(), RUN_DIR)
        .expect("plan")
        .deferred
        .is_some()
}

fn source_job(lang: &str, source: &str) -> Job {
    let mut j = job(lang, None);
    j.source = source.to_owned();
    j
}

#[test]
fn test_which_profiles_defer_their_check() {
    for p in embedded_profiles().expect("profiles") {
        let deferred = plan(&p.id, None).deferred.is_some();
        assert_eq!(
            deferred,
            p.id == "python3" || p.id == "php",
            "{}: only the interpreters whose check is a second start of themselves",
            p.id
        );
    }
    let py = plan("python3", None).deferred.expect("deferred");
    assert_eq!(
        py.no_check_if_stderr_starts_with.as_deref(),
        Some("Traceback (most recent call last):\n")
    );
    assert!(
        plan("php", None)
            .deferred
            .expect("deferred")
            .check_if_stdout_matches
            .is_some()
    );
}

#[test]
fn test_own_arguments_or_an_option_like_name_take_two_steps() {
    let mut j = job("python3", None);
    j.params.interpreterargs = strs(&["-BE"]);
    assert!(defers("python3", &j), "the default, given explicitly");
    for (param, value) in [
        ("interpreterargs", vec!["-W ignore"]),
        ("interpreterargs", vec![]),
        ("compileargs", vec!["-O"]),
        ("linkargs", vec!["x"]),
    ] {
        let mut j = job("python3", None);
        let v = strs(&value);
        match param {
            "interpreterargs" => j.params.interpreterargs = v,
            "compileargs" => j.params.compileargs = v,
            _ => j.params.linkargs = v,
        }
        assert!(!defers("python3", &j), "{param} {value:?}");
    }
    assert!(!defers("python3", &job("python3", Some("-q"))));
    // A disk limit of 0 is not raised for the check, which writes (py_compile's bytecode).
    let mut j = job("python3", None);
    j.params.disklimit = Some(0.0);
    assert!(!defers("python3", &j));
    j.params.disklimit = Some(0.001);
    assert!(defers("python3", &j), "raised to the compile minimum");
    assert!(defers(
        "python3",
        &job("python3", Some("__tester__.python3"))
    ));
    // runargs only reach the program.
    let mut j = job("php", None);
    j.params.runargs = strs(&["-l"]);
    assert!(defers("php", &j));
}

#[test]
fn test_python_files_the_check_would_import_take_two_steps() {
    for name in [
        "argparse.py",
        "traceback.pyc",
        "tokenize.cpython-311-x86_64-linux-gnu.so",
        "py_compile.py",
        "re.py",
        "collections.py",
        "__pycache__",
    ] {
        let mut j = job("python3", None);
        j.files = vec![JobFile {
            name: name.into(),
            contents: b"x".to_vec(),
        }];
        assert!(!defers("python3", &j), "support file {name}");
        assert!(
            !defers("python3", &job("python3", Some(name))),
            "source {name}"
        );
    }
    for name in [
        "helper.py",
        "data.txt",
        "argparse.txt",
        "my_argparse.py",
        "regex.py",
    ] {
        let mut j = job("python3", None);
        j.files = vec![JobFile {
            name: name.into(),
            contents: b"x".to_vec(),
        }];
        assert!(defers("python3", &j), "{name}");
    }
}

#[test]
fn test_php_sources_the_check_reads_differently_take_two_steps() {
    for src in [
        "<? echo 1; ?>",
        "<?\necho 1;",
        "text <?xml version=\"1.0\"?>",
        "<?phpx",
        "<?php\nfunction ctype_digit($x) { return true; }",
        "<?php\nFUNCTION Ctype_Alpha($x) {}",
        "<?php\nfunction &iconv_strlen() {}",
        "<?php\nfunction _($s) { return $s; }",
        "<?php\nfunction gettext($s) {}",
        "<?php\nfunction dcngettext() {}",
        "<?php\nfunction posix_getpid() {}",
        "<?php\nfunction jdtounix() {}",
    ] {
        assert!(!defers("php", &source_job("php", src)), "{src:?}");
    }
    for src in [
        "<?php\necho 1;",
        "<?PHP echo 1;",
        "<?= 1 ?>",
        "<?php",
        "<?php\nfunction digits($x) {}\nclass A { function __construct() {} }",
        "<?php\n$f = function ($x) { return ctype_digit($x); };",
        "<?php\nfunction _helper() {}",
    ] {
        assert!(defers("php", &source_job("php", src)), "{src:?}");
    }
}

#[test]
fn test_deferred_check_needed() {
    let rule = DeferredCheck {
        check_if_stdout_matches: Some(Pattern::new("\\A\\nWarning: ").expect("regex")),
        no_check_if_stderr_starts_with: Some("Traceback (most recent call last):\n".into()),
        compiled_if_stdout: false,
        compiled_after_cpu: None,
    };
    const CAP: u64 = 100;
    let ev = |exited_0: bool, stdout: &'static [u8], stderr: &'static [u8], cap: u64| RunEvidence {
        exited_0,
        cpu: Duration::ZERO,
        stdout,
        stderr,
        cap,
    };
    let needed = |r: &DeferredCheck, e: RunEvidence<'_>| r.needed(&e);
    // A clean run: nothing to check.
    assert!(!needed(&rule, ev(true, b"out\n", b"", CAP)));
    // Any stderr, any other end, or a diagnostic on stdout.
    assert!(needed(&rule, ev(true, b"", b"x", CAP)));
    assert!(needed(&rule, ev(false, b"", b"", CAP)));
    assert!(needed(&rule, ev(true, b"\nWarning: w\nout", b"", CAP)));
    // Output cut at the stream limit vouches for nothing (a cut diagnostic would not match).
    assert!(needed(&rule, ev(true, &[b'x'; 100], b"", CAP)));
    assert!(needed(&rule, ev(true, b"", b"", 0)));
    assert!(needed(&rule, ev(true, b"\nWar", b"", 4)));
    // The program ran: no check, however it ended, even cut.
    let tb = b"Traceback (most recent call last):\n";
    assert!(!needed(&rule, ev(false, b"\nWarning: ", tb, CAP)));
    assert!(!needed(&rule, ev(true, b"", tb, tb.len() as u64)));
    assert!(needed(&rule, ev(false, b"", b" Traceback", CAP)));
    // Without a rule, only a clean run skips the check.
    let plain = DeferredCheck::default();
    assert!(!needed(&plain, ev(true, b"\nWarning: x", b"", CAP)));
    assert!(needed(&plain, ev(true, b"", b"Traceback", CAP)));
    assert!(needed(&plain, ev(false, b"out", b"", CAP)));

    // A run that did not exit 0 proves it compiled by its output or its CPU time.
    let killed = DeferredCheck {
        compiled_if_stdout: true,
        compiled_after_cpu: Some(Duration::from_millis(80)),
        ..rule.clone()
    };
    let at = |cpu_ms: u64, stdout: &'static [u8], stderr: &'static [u8]| RunEvidence {
        cpu: Duration::from_millis(cpu_ms),
        ..ev(false, stdout, stderr, CAP)
    };
    assert!(!needed(&killed, at(0, b"started\n", b"")));
    assert!(!needed(&killed, at(80, b"", b"")));
    assert!(!needed(&killed, at(5000, b"", b"")));
    assert!(needed(&killed, at(79, b"", b"")));
    // Not with a word on stderr, a diagnostic on stdout, or cut output.
    assert!(needed(
        &killed,
        at(5000, b"", b"prog.py:1: SyntaxWarning: x\n")
    ));
    assert!(needed(&killed, at(5000, b"\nWarning: w\n", b"")));
    assert!(needed(&killed, at(5000, &[b'x'; 100], b"")));
    // Each proof alone.
    let stdout_only = DeferredCheck {
        compiled_after_cpu: None,
        ..killed.clone()
    };
    assert!(needed(&stdout_only, at(5000, b"", b"")));
    assert!(!needed(&stdout_only, at(0, b"x", b"")));
    let cpu_only = DeferredCheck {
        compiled_if_stdout: false,
        ..killed.clone()
    };
    assert!(needed(&cpu_only, at(0, b"x", b"")));
    assert!(!needed(&cpu_only, at(80, b"x", b"")));
}

#[test]
fn test_compile_cpu_bound_per_job() {
    let bound = CompileCpuBound {
        base: Duration::from_millis(60),
        per_kib: Duration::from_millis(20),
        max_source_bytes: 16 * 1024,
        min_memory_bytes: 64 * 1_024_000,
    };
    let mem = 1000 * 1_024_000;
    let ms = |n| Some(Duration::from_millis(n));
    assert_eq!(bound.for_run(0, mem), ms(60));
    assert_eq!(bound.for_run(1, mem), ms(80), "a started KiB counts whole");
    assert_eq!(bound.for_run(1024, mem), ms(80));
    assert_eq!(bound.for_run(16 * 1024, mem), ms(60 + 16 * 20));
    assert_eq!(
        bound.for_run(16 * 1024 + 1, mem),
        None,
        "too large a source"
    );
    assert_eq!(bound.for_run(10, 64 * 1_024_000), ms(80));
    assert_eq!(
        bound.for_run(10, 64 * 1_024_000 - 1),
        None,
        "too little memory"
    );

    // The shipped profiles resolve it per job: the source's size, the run's memory limit.
    for lang in ["python3", "php"] {
        let d = |source: &str, memorylimit: Option<f64>| {
            let mut j = source_job(lang, source);
            j.params.memorylimit = memorylimit;
            profile(lang)
                .plan(&j, &PlanConfig::default(), RUN_DIR)
                .expect("plan")
                .deferred
                .expect("deferred")
        };
        let small = d("x", None);
        assert!(small.compiled_if_stdout, "{lang}");
        assert_eq!(small.compiled_after_cpu, ms(80), "{lang}");
        assert_eq!(d(&"#".repeat(4096), None).compiled_after_cpu, ms(140));
        assert_eq!(d(&"#".repeat(20_000), None).compiled_after_cpu, None);
        assert_eq!(d("x", Some(32.0)).compiled_after_cpu, None, "{lang}");
    }
}

// ---------------------------------------------------------------- schema validation

fn invalid(text: &str) -> String {
    match Profile::from_toml("t.toml", text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => {
            let mut msg = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                msg.push_str(&format!(": {source}"));
            }
            msg
        }
    }
}

const MINIMAL: &str = "id = \"x\"\nversion_command = [\"/bin/x\"]\nversion_regex = '(.*)'\n\
                       default_source_name = \"prog.x\"\n";

#[test]
fn test_schema_rejects_bad_profiles() {
    assert!(
        Profile::from_toml(
            "t",
            &format!("{MINIMAL}[run]\nargv = [\"/bin/x\", \"{{src}}\"]\n")
        )
        .is_ok()
    );
    let msg = invalid(&format!("{MINIMAL}colour = 1\n[run]\nargv = [\"x\"]\n"));
    assert!(msg.contains("unknown field"), "{msg}");
    let msg = invalid(&format!("{MINIMAL}[run]\nargv = [\"x\", \"{{source}}\"]\n"));
    assert!(msg.contains("unknown placeholder {source}"), "{msg}");
    let msg = invalid(&format!(
        "{MINIMAL}[run]\nargv = [\"x\", \"-a{{runargs}}\"]\n"
    ));
    assert!(msg.contains("whole element"), "{msg}");
    let msg = invalid(&format!("{MINIMAL}[run]\nargv = []\n"));
    assert!(msg.contains("run argv is empty"), "{msg}");
    let msg = invalid(&format!(
        "{MINIMAL}[run]\nargv = [\"x\"]\n[params]\nnumprocs = 300\n"
    ));
    assert!(msg.contains("numprocs"), "{msg}");
    let msg = invalid(&format!(
        "{MINIMAL}[run]\nargv = [\"x\"]\n[params]\ncputmie = 3\n"
    ));
    assert!(msg.contains("unknown field"), "{msg}");
    let msg = invalid(&format!(
        "{MINIMAL}[run]\nargv = [\"x\"]\n[compile]\nargv = [\"c\"]\ncmpinfo = {{ kind = \"bogus\" }}\n"
    ));
    assert!(msg.contains("bogus"), "{msg}");
    let msg = invalid(&format!(
        "{}[run]\nargv = [\"x\"]\n",
        MINIMAL.replace("'(.*)'", "'.*'")
    ));
    assert!(msg.contains("capture group"), "{msg}");
    let msg = invalid(&format!(
        "{MINIMAL}[run]\nargv = [\"x\"]\n[params]\ncompileargs = [\"'a\"]\n"
    ));
    assert!(msg.contains("unbalanced"), "{msg}");
    let deferred = |table: &str| {
        format!(
            "{MINIMAL}[run]\nargv = [\"x\"]\n[compile]\nargv = [\"c\"]\n[compile.deferred]\n{table}\n"
        )
    };
    assert!(Profile::from_toml("t", &deferred("")).is_ok());
    let msg = invalid(&deferred("check_if_stdout_matches = '('"));
    assert!(msg.contains("check_if_stdout_matches"), "{msg}");
    let msg = invalid(&deferred("eager_if_source_matches = '['"));
    assert!(msg.contains("eager_if_source_matches"), "{msg}");
    let msg = invalid(&deferred("no_check_if_stderr_starts_with = ''"));
    assert!(msg.contains("must not be empty"), "{msg}");
    let msg = invalid(&deferred("always = true"));
    assert!(msg.contains("unknown field"), "{msg}");
    let bound = |fields: &str| deferred(&format!("compiled_after_cpu = {{ {fields} }}"));
    assert!(
        Profile::from_toml(
            "t",
            &bound("base_ms = 60, per_kib_ms = 20, max_source_kib = 16, min_memory_mb = 64")
        )
        .is_ok()
    );
    let msg = invalid(&bound(
        "base_ms = 0, per_kib_ms = 0, max_source_kib = 16, min_memory_mb = 64",
    ));
    assert!(msg.contains("both 0"), "{msg}");
    let msg = invalid(&bound("base_ms = 60, per_kib_ms = 20, max_source_kib = 16"));
    assert!(msg.contains("min_memory_mb"), "{msg}");
    let msg = invalid(&bound(
        "base_ms = 60, per_kib_ms = 20, max_source_kib = 16, min_memory_mb = 64, x = 1",
    ));
    assert!(msg.contains("unknown field"), "{msg}");
    let msg = invalid(&deferred("compiled_if_stdout = 1"));
    assert!(
        msg.contains("compiled_if_stdout") || msg.contains("bool"),
        "{msg}"
    );
}

#[test]
fn test_version_parsing() {
    assert_eq!(
        profile("c").parse_version("gcc (Debian 12.2.0-14) 12.2.0\n"),
        "12.2.0"
    );
    assert_eq!(
        profile("python3").parse_version("Python 3.11.2\n"),
        "3.11.2"
    );
    assert_eq!(
        profile("java").parse_version("openjdk version \"17.0.13\" 2024-10-15"),
        "17.0.13"
    );
    assert_eq!(profile("nodejs").parse_version("v18.19.0\n"), "18.19.0");
    assert_eq!(
        profile("php").parse_version("PHP 8.2.26 (cli) (built: ...)"),
        "8.2.26"
    );
    assert_eq!(profile("pascal").parse_version("3.2.2\n"), "3.2.2");
    assert_eq!(
        profile("octave").parse_version("GNU Octave, version 7.3.0\nCopyright"),
        "7.3.0"
    );
    assert_eq!(profile("octave").parse_version("nothing"), "Unknown");
}

/// Needs the toolchains: `cargo test -p runner --lib profile -- --ignored`. Every shipped
/// language whose compiler or interpreter is installed must be detected with a parsed version.
#[test]
#[ignore = "depends on the toolchains installed on the host"]
fn test_host_detection_of_installed_toolchains() {
    let reg = Registry::embedded().expect("valid");
    let langs = reg.languages();
    eprintln!("detected: {langs:?}");
    for p in embedded_profiles().expect("valid") {
        if Path::new(&p.version_command[0]).exists() {
            let found = langs.iter().find(|(id, _)| *id == p.id);
            let (_, version) = found.unwrap_or_else(|| panic!("{} not detected", p.id));
            assert_ne!(version, "Unknown", "{}", p.id);
        }
    }
}

/// Needs the toolchains (ignored by default). Runs each plan's steps directly on the host, without
/// a jail, to check that the argv lists really compile and run a hello-world program.
#[test]
#[ignore = "depends on the toolchains installed on the host"]
fn test_plans_run_on_host_toolchains() {
    let programs = [
        (
            "c",
            "__tester__.c",
            "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n",
        ),
        (
            "cpp",
            "__tester__.cpp",
            "#include <iostream>\nint main(){std::cout<<\"hi\\n\";}\n",
        ),
        ("python3", "__tester__.python3", "print('hi')\n"),
        (
            "java",
            "Hi.java",
            "public class Hi { public static void main(String[] a) { System.out.println(\"hi\"); } }\n",
        ),
        ("nodejs", "__tester__.nodejs", "console.log('hi');\n"),
        ("php", "__tester__.php", "<?php echo \"hi\\n\";\n"),
        ("pascal", "__tester__.pascal", "begin writeln('hi'); end.\n"),
        ("octave", "prog", "disp('hi')\n"),
    ];
    for (lang, name, code) in programs {
        let p = profile(lang);
        if !Path::new(&p.version_command[0]).exists() {
            eprintln!("skip {lang}: not installed");
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let run_dir = dir.path().to_str().expect("utf-8 path");
        let mut j = job(lang, Some(name));
        j.source = code.to_owned();
        let plan = p.plan(&j, &PlanConfig::default(), run_dir).expect("plan");
        for (file, contents) in &plan.files {
            std::fs::write(dir.path().join(file), contents).expect("write");
        }
        let exec = |step: &super::plan::Step| {
            std::process::Command::new(&step.argv[0])
                .args(&step.argv[1..])
                .env_clear()
                .envs(step.env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir.path())
                .output()
                .expect("spawn")
        };
        if let Some(compile) = &plan.compile {
            let out = exec(compile);
            let info = cmpinfo(&plan.cmpinfo, &out.stdout, &out.stderr, |f| {
                std::fs::read(dir.path().join(f)).ok()
            });
            assert!(
                info.is_empty(),
                "{lang} cmpinfo: {}",
                String::from_utf8_lossy(&info)
            );
        }
        let out = exec(&plan.run);
        let stderr = filter_stderr(&plan.stderr_filter, out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hi\n",
            "{lang} stderr: {}",
            String::from_utf8_lossy(&stderr)
        );
        assert!(
            stderr.is_empty(),
            "{lang} stderr: {}",
            String::from_utf8_lossy(&stderr)
        );
        eprintln!("ran {lang}");
    }
}

/// Needs the toolchains (ignored by default): a syntax error in each compiled language gives a
/// non-empty cmpinfo through the profile's rule, run directly on the host.
#[test]
#[ignore = "depends on the toolchains installed on the host"]
fn test_compile_errors_give_cmpinfo_on_host_toolchains() {
    let programs = [
        ("c", "int main(void){ return x; }\n"),
        ("cpp", "int main(){ return x; }\n"),
        ("python3", "print('hi'\n"),
        (
            "java",
            "public class Bad { public static void main(String[] a) { int x = ; } }\n",
        ),
        ("php", "<?php echo 'hi'\n"),
        ("pascal", "begin writeln('hi') end\n"),
    ];
    for (lang, code) in programs {
        let p = profile(lang);
        if !Path::new(&p.version_command[0]).exists() {
            eprintln!("skip {lang}: not installed");
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = job(lang, None);
        j.source = code.to_owned();
        let plan = p
            .plan(
                &j,
                &PlanConfig::default(),
                dir.path().to_str().expect("utf-8"),
            )
            .expect("plan");
        for (file, contents) in &plan.files {
            std::fs::write(dir.path().join(file), contents).expect("write");
        }
        let compile = plan.compile.as_ref().expect("compile step");
        let out = std::process::Command::new(&compile.argv[0])
            .args(&compile.argv[1..])
            .env_clear()
            .envs(compile.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .output()
            .expect("spawn");
        let info = cmpinfo(&plan.cmpinfo, &out.stdout, &out.stderr, |f| {
            std::fs::read(dir.path().join(f)).ok()
        });
        eprintln!("{lang} cmpinfo: {}", String::from_utf8_lossy(&info));
        assert!(!info.is_empty(), "{lang}: empty cmpinfo for a syntax error");
    }
}

#[test]
fn test_memory_floor_one_megabyte() {
    // A tiny memorylimit still gets a jail that can start; the program then runs out (17).
    let p = plan_with(
        "python3",
        None,
        Params {
            memorylimit: Some(0.0001),
            ..Params::default()
        },
    )
    .expect("plan");
    assert_eq!(p.run.limits.memory_bytes, 1_024_000);
}

#[test]
fn test_long_java_class_name_falls_back_to_default_name() {
    let class = "C".repeat(300);
    let mut j = job("java", None);
    j.source = format!("public class {class} {{ public static void main(String[] a) {{}} }}\n");
    let p = profile("java")
        .plan(&j, &PlanConfig::default(), RUN_DIR)
        .expect("plan");
    assert_eq!(file_names(&p)[0], "prog.java");
    let class = "C".repeat(150);
    j.source = format!("public class {class} {{ public static void main(String[] a) {{}} }}\n");
    let p = profile("java")
        .plan(&j, &PlanConfig::default(), RUN_DIR)
        .expect("plan");
    assert_eq!(file_names(&p)[0], format!("{class}.java"));
}
