//! Failpoints: crash the process at a chosen step of the checkpoint protocol, for tests.
//!
//! `SABOT_FAILPOINT=<name>[@<epoch>]` makes the process exit at once (no destructors, no
//! flushing, like `kill -9`) when checkpoint `<epoch>` (default: any) reaches step `<name>`:
//! `after-barrier-injection`, `after-operator-snapshot`, `mid-upload` (half a state file is
//! written), `before-manifest`, `after-manifest` (before sinks commit), `between-sink-commits`
//! (the first sink partition committed its transactions, the others not), `after-sink-commit`.
//! `SABOT_FAILPOINT=store-write@<n>` instead makes the n-th write to the checkpoint store fail
//! with an error (the checkpoint is aborted, the job goes on).

use std::sync::OnceLock;

/// A step of the checkpoint protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// The coordinator asked the sources for barrier N.
    AfterBarrierInjection,
    /// An operator handed over its snapshot.
    AfterOperatorSnapshot,
    /// Half of a state file is in the store.
    MidUpload,
    /// Every operator acknowledged; the manifest is not written yet.
    BeforeManifest,
    /// The manifest is durable; sinks have not committed.
    AfterManifest,
    /// The first of several sink partitions committed, the others not yet.
    BetweenSinkCommits,
    /// Sinks committed.
    AfterSinkCommit,
}

impl Failpoint {
    fn name(self) -> &'static str {
        match self {
            Failpoint::AfterBarrierInjection => "after-barrier-injection",
            Failpoint::AfterOperatorSnapshot => "after-operator-snapshot",
            Failpoint::MidUpload => "mid-upload",
            Failpoint::BeforeManifest => "before-manifest",
            Failpoint::AfterManifest => "after-manifest",
            Failpoint::BetweenSinkCommits => "between-sink-commits",
            Failpoint::AfterSinkCommit => "after-sink-commit",
        }
    }
}

struct Setting {
    name: String,
    at: Option<u64>,
}

fn setting() -> Option<&'static Setting> {
    static SETTING: OnceLock<Option<Setting>> = OnceLock::new();
    SETTING
        .get_or_init(|| {
            let value = std::env::var("SABOT_FAILPOINT").ok()?;
            let (name, at) = match value.split_once('@') {
                Some((name, at)) => (name.to_string(), at.trim().parse().ok()),
                None => (value.clone(), None),
            };
            Some(Setting {
                name: name.trim().to_string(),
                at,
            })
        })
        .as_ref()
}

/// True if `point` is armed for checkpoint `epoch`.
pub fn hit(point: Failpoint, epoch: u64) -> bool {
    setting().is_some_and(|s| s.name == point.name() && s.at.is_none_or(|at| at == epoch))
}

/// Ends the process at once if `point` is armed for `epoch`.
pub fn check(point: Failpoint, epoch: u64) {
    if hit(point, epoch) {
        crash(point);
    }
}

/// Ends the process at once, as a crash would.
pub fn crash(point: Failpoint) -> ! {
    eprintln!("sabot: failpoint {} reached, exiting", point.name());
    // SAFETY: `_exit` ends the process without running any Rust code; nothing is left in an
    // inconsistent state that outlives the process.
    unsafe { libc::_exit(86) }
}

/// True if the `n`-th write to the checkpoint store should fail.
pub fn fails_write(n: u64) -> bool {
    setting().is_some_and(|s| s.name == "store-write" && s.at == Some(n))
}
