//! Sinks at the end of a checkpoint: committing their pre-commits once the manifest is durable,
//! and, on recovery, learning whether a crash between manifest and commit lost a checkpoint's
//! output (Kafka transactions a restarted process cannot commit).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::{Result, exec_datafusion_err, plan_datafusion_err, plan_err};
use serde::Deserialize;

use super::failpoint::{self, Failpoint};
use super::manifest::{Manifest, PartitionSnapshot};
use super::store::{CheckpointStore, Recovery, SkippedCheckpoint};
use crate::connectors::{SinkConnector, SinkMeta};

/// An operator that snapshots state, with its partition count.
#[derive(Debug, Clone)]
pub struct Participant {
    /// Stable operator id (position in the plan and name).
    pub operator: String,
    /// Partitions that each acknowledge every checkpoint.
    pub partitions: usize,
    /// For sinks: the connector that commits what the writers pre-committed.
    pub sink: Option<Arc<dyn SinkConnector>>,
}

/// The newest intact checkpoint whose sink output is not lost.
///
/// A crash after a checkpoint's manifest is durable and before its sink commits leaves the
/// commits in doubt. Most are re-applied on recovery, but a Kafka transaction can only be
/// committed by the producer that began it: if it was not committed, the restarted producer
/// aborts it, and the checkpoint's output is lost. Then the previous checkpoint is restored
/// instead (its output was committed before the next checkpoint began), and the rows after it
/// are produced again; if it was the first checkpoint, the job starts over. The lost
/// checkpoint is deleted (once the one to fall back on is found), so that the epochs the
/// resumed run writes never meet its files.
pub(super) async fn recover_committed(
    store: &CheckpointStore,
    job: &str,
    participants: &[Participant],
) -> Result<Option<Recovery>> {
    let Some(mut recovery) = store.recover(job).await? else {
        return Ok(None);
    };
    loop {
        let epoch = recovery.manifest.epoch;
        // Looking transactions up blocks on a broker: not on the async worker threads.
        let (owned, manifest) = (participants.to_vec(), recovery.manifest.clone());
        let lost = tokio::task::spawn_blocking(move || lost_output(&owned, &manifest))
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))??;
        let Some(what) = lost else {
            return Ok(Some(recovery));
        };
        // The checkpoint to fall back on, before anything is deleted (an error if older
        // checkpoints exist but none is intact: starting over would repeat their output).
        let older = store.recover_before(job, epoch).await?;
        let then = match &older {
            Some(older) => format!("restoring checkpoint {}", older.manifest.epoch),
            // The first complete checkpoint: nothing was committed before it.
            None => "starting over (it was the first checkpoint)".to_string(),
        };
        log::warn!("checkpoint {epoch}: {what}; {then}");
        eprintln!("warning: checkpoint {epoch}: {what}; {then}");
        store.delete_checkpoint(epoch).await?;
        match older {
            Some(older) => recovery = older,
            None => return Ok(None),
        }
    }
}

/// Why a manifest's sink output is lost, if it is (see [`recover_committed`]).
fn lost_output(participants: &[Participant], manifest: &Manifest) -> Result<Option<String>> {
    // Final checkpoints of finished jobs too: their sinks commit after the manifest as well.
    for participant in participants {
        let Some(sink) = &participant.sink else {
            continue;
        };
        let mut owned = Vec::new();
        for snapshot in manifest
            .operators
            .get(&participant.operator)
            .into_iter()
            .flatten()
        {
            owned.extend(sink_meta(&participant.operator, snapshot)?.pre_commits);
        }
        let commits: Vec<&serde_json::Value> = owned.iter().collect();
        let verdicts = sink.committed(&commits)?;
        let id = |i: usize| {
            commits[i]
                .get("transactional_id")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string()
        };
        let with = |verdict: Option<bool>| -> Vec<String> {
            (0..commits.len())
                .filter(|i| verdicts.get(*i).copied().flatten() == verdict)
                .map(id)
                .collect()
        };
        // Transactions with records (only their output can be lost or doubled).
        let has_records = |i: usize| {
            commits[i]
                .get("offsets")
                .and_then(|o| o.as_object())
                .is_some_and(|o| !o.is_empty())
        };
        let unknown: Vec<String> = (0..commits.len())
            .filter(|i| verdicts.get(*i).copied().flatten().is_none() && has_records(*i))
            .map(id)
            .collect();
        let (lost, committed) = (with(Some(false)), with(Some(true)));
        let unknown_note = format!(
            "whether the sink's transactions {} were committed cannot be told (an open \
             transaction holds their records back)",
            unknown.join(", ")
        );
        if lost.is_empty() {
            if !unknown.is_empty() {
                log::warn!(
                    "checkpoint {}: {unknown_note}; assuming they were",
                    manifest.epoch
                );
                eprintln!(
                    "warning: checkpoint {}: {unknown_note}; assuming they were",
                    manifest.epoch
                );
            }
            continue;
        }
        let mut what = format!(
            "the sink's transactions {} were not committed before the crash",
            lost.join(", ")
        );
        // Crashed between two commits: restoring the previous checkpoint writes the committed
        // transactions' rows again (at least once, not exactly once).
        if !committed.is_empty() {
            what.push_str(&format!(
                ", while {} were: their rows of this checkpoint will be written twice",
                committed.join(", ")
            ));
        }
        if !unknown.is_empty() {
            what.push_str(&format!(
                "; {unknown_note}: if they were, their rows of this checkpoint will be written \
                 twice"
            ));
        }
        return Ok(Some(what));
    }
    Ok(None)
}

/// Takes back what the sinks of damaged checkpoints newer than the restored one published:
/// the rows after the restored checkpoint are produced again, and must not be there twice.
///
/// A damaged checkpoint whose manifest can be read names its pre-commits; each sink takes
/// back its own ([`SinkConnector::uncommit`]: a filesystem sink deletes the published files).
/// One whose manifest cannot be read, or a pre-commit a sink cannot take back (a committed
/// Kafka transaction), makes recovery refuse: resuming would repeat output silently.
pub(super) async fn take_back(
    participants: &[Participant],
    skipped: &[SkippedCheckpoint],
    restored: u64,
) -> Result<()> {
    if skipped.is_empty() || participants.iter().all(|p| p.sink.is_none()) {
        return Ok(());
    }
    // Looking Kafka transactions up blocks on a broker: not on the async worker threads.
    let (participants, skipped) = (participants.to_vec(), skipped.to_vec());
    tokio::task::spawn_blocking(move || take_back_blocking(&participants, &skipped, restored))
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
}

fn take_back_blocking(
    participants: &[Participant],
    skipped: &[SkippedCheckpoint],
    restored: u64,
) -> Result<()> {
    for checkpoint in skipped {
        let Some(manifest) = &checkpoint.manifest else {
            return plan_err!(
                "checkpoint {} is damaged ({}) and its manifest cannot be read, so what its \
                 sinks published is unknown: resuming from checkpoint {restored} could write \
                 that output again. Repair or restore the checkpoint files, or remove the \
                 state directory (and the sink's output) to start over",
                checkpoint.epoch,
                checkpoint.why
            );
        };
        for (sink, commit) in pre_commits(participants, &manifest.operators)? {
            sink.uncommit(&commit).map_err(|e| {
                plan_datafusion_err!(
                    "checkpoint {} is damaged ({}), and its output cannot be taken back to \
                     resume from checkpoint {restored}: {}",
                    checkpoint.epoch,
                    checkpoint.why,
                    e.strip_backtrace()
                )
            })?;
        }
    }
    Ok(())
}

/// The pre-commits a sink partition snapshotted (`operator` names it in the error).
fn sink_meta(operator: &str, snapshot: &PartitionSnapshot) -> Result<SinkMeta> {
    if snapshot.meta.is_null() {
        // A partition that never pre-committed anything.
        return Ok(SinkMeta::default());
    }
    SinkMeta::deserialize(&snapshot.meta).map_err(|e| {
        exec_datafusion_err!(
            "the checkpointed pre-commits of partition {} of sink {operator} do not read as \
             this version writes them ({e}); they were written by another version",
            snapshot.partition
        )
    })
}

/// Every sink pre-commit in `operators`, with its sink.
fn pre_commits<'a>(
    participants: &'a [Participant],
    operators: &BTreeMap<String, Vec<PartitionSnapshot>>,
) -> Result<Vec<(&'a Arc<dyn SinkConnector>, serde_json::Value)>> {
    let mut out = Vec::new();
    for participant in participants {
        let Some(sink) = &participant.sink else {
            continue;
        };
        for snapshot in operators.get(&participant.operator).into_iter().flatten() {
            let meta = sink_meta(&participant.operator, snapshot)?;
            out.extend(meta.pre_commits.into_iter().map(|c| (sink, c)));
        }
    }
    Ok(out)
}

/// Applies the pre-commits recorded in a manifest's sink snapshots.
pub(super) fn commit_sinks(
    participants: &[Participant],
    operators: &BTreeMap<String, Vec<PartitionSnapshot>>,
    epoch: Option<u64>,
) -> Result<()> {
    // Per sink partition, every pre-commit not known to be committed yet (those of aborted
    // checkpoints too), oldest first.
    let mut partitions: Vec<(&Arc<dyn SinkConnector>, SinkMeta)> = Vec::new();
    for participant in participants {
        let Some(sink) = &participant.sink else {
            continue;
        };
        for snapshot in operators.get(&participant.operator).into_iter().flatten() {
            partitions.push((sink, sink_meta(&participant.operator, snapshot)?));
        }
    }
    for (i, (sink, meta)) in partitions.iter().enumerate() {
        for commit in &meta.pre_commits {
            sink.commit(commit)?;
        }
        if let Some(epoch) = epoch
            && i + 1 < partitions.len()
        {
            failpoint::check(Failpoint::BetweenSinkCommits, epoch);
        }
    }
    Ok(())
}
