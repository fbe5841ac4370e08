//! Judge mode (docs/judge.md): test sets of a problem with versions, output comparison,
//! verdicts, and the engine that judges submissions. The HTTP API and queue mode call the engine
//! ([`Judge`]); the engine runs programs through the [`Backend`] seam, which the scheduler
//! implements (`backend`): so `judge` sits above `sched` and `jail`, and below `api`.
//!
//! Owns: the verdicts and their rules (`verdict`), `problem.toml` (`problem`), the compare modes
//! (`compare`), reading test-set archives (`archive`), the test-set store on disk (`testset`,
//! with its recency order in the crate's `lru`), the wire form of submissions, results and events shared by
//! the HTTP API and queue mode (`submission`), the origin's HTTP client and body spooling
//! (`origin`), the async front that callers use, with single flight for fetches
//! (`provider::Testsets`), and the `[judge]` settings (`config`).
//!
//! How a caller uses it: at start, `JudgeConfig::new` → `TestsetStore::open(<data_dir>/testsets)`
//! → `Testsets::new(store, origin)`. An upload: `Testsets::put_body`. A submission:
//! `Testsets::ensure` (a `Lease`), then per case `Lease::open_input` (the jail's stdin),
//! `Verdict::from_run`, and `compare::compare` against `Lease::open_expected`; `Progress` orders
//! the case results and applies `stop_on_first_failure`. The engine (`engine::Judge`) does all
//! of this for a submission, with the journal (`journal`) and its metrics (`metrics`).
//!
//! Must not: import `api`, `peer` or `config`; use `sched` or `jail` anywhere but `backend`
//! (running) and `engine` (how a run ended); put an expected output anywhere a jail can see it
//! (the store lives under `<data_dir>/testsets`, mode 0700, which no jail mounts; a case's input
//! reaches a jail only as an open file for its stdin).

pub mod archive;
pub mod backend;
pub mod compare;
pub mod config;
pub mod engine;
pub mod journal;
pub mod local;
pub mod metrics;
pub mod origin;
pub mod problem;
pub mod provider;
pub mod submission;
pub mod testset;
pub mod verdict;

pub use self::backend::{Backend, BackendError, CompileOutcome, CompileRequest, Program};
pub use self::compare::{CompareMode, CompareSpec, Comparison, compare};
pub use self::config::{JudgeConfig, JudgeConfigError, RawJudge};
pub use self::engine::{
    CancelOutcome, EventId, Judge, JudgeSettings, SubmitError, SubmitMode, Submitted, Subscription,
};
pub use self::origin::Origin;
pub use self::provider::{EnsureError, PutError, Testsets};
pub use self::submission::{
    Accepted, CaseResult, CompileResult, Event, FieldError, Status, SubmissionRequest,
    SubmissionResult, Summary,
};
pub use self::testset::{Lease, Manifest, Put, PutStatus, TestsetError, TestsetId, TestsetStore};
pub use self::verdict::{Progress, Verdict};

pub(crate) use crate::hex::hex;
