//! The rules a slot must pass before it streams, shared by `run` (the session's
//! start-up) and `check`, so that what `check` passes `run` accepts.
//!
//! Owns the verdicts on what start-up finds: an AWS region for Kinesis, the slot's
//! row in `pg_replication_slots` (its database, its plugin, not lost, or missing and
//! creatable). The checkpoint rule is `checkpoint::startup`'s. It never queries or
//! changes anything itself: callers fetch, these functions judge.

use super::SlotError;
use crate::checkpoint::startup::SlotSeen;
use crate::config::SlotConfig;
use crate::lsn::Lsn;
use crate::source::{self, ConnectParams, SlotInfo};

/// What start-up does with the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotPlan {
    /// It does not exist and `create_slot` allows creating it.
    Create,
    /// It exists and may be streamed from its confirmed position.
    Resume(Lsn),
}

impl SlotPlan {
    /// The slot as the checkpoint rule sees it.
    pub(crate) fn seen(self) -> SlotSeen {
        match self {
            SlotPlan::Create => SlotSeen::Missing,
            SlotPlan::Resume(at) => SlotSeen::At(at),
        }
    }
}

/// Kinesis needs a region (the slot's `region`, or the environment's). Without one
/// no request can be signed, and retrying cannot help.
pub(crate) fn require_region(
    slot: &SlotConfig,
    kinesis: &aws_sdk_kinesis::Client,
) -> Result<(), SlotError> {
    match kinesis.config().region() {
        Some(_) => Ok(()),
        None => Err(SlotError::NoRegion {
            slot: slot.name.clone(),
        }),
    }
}

/// The verdict on the slot's row (`None`: no such slot) for this config, connected
/// with `params` (whose database may come from a secret rather than `db_name`).
pub(crate) fn judge_slot(
    slot: &SlotConfig,
    info: Option<&SlotInfo>,
    params: &ConnectParams,
) -> Result<SlotPlan, SlotError> {
    let Some(info) = info else {
        return if slot.create_slot {
            Ok(SlotPlan::Create)
        } else {
            Err(SlotError::SlotMissing {
                slot: slot.name.clone(),
                endpoint: params.endpoint(),
            })
        };
    };
    if info.plugin.as_deref() != Some(source::OUTPUT_PLUGIN) {
        return Err(SlotError::WrongPlugin {
            slot: slot.name.clone(),
            plugin: info
                .plugin
                .clone()
                .unwrap_or_else(|| "none (physical slot)".into()),
        });
    }
    // Slots are cluster-wide, but a logical slot decodes only its own database.
    if let Some(database) = info.database.as_deref() {
        if database != params.dbname {
            return Err(SlotError::WrongDatabase {
                slot: slot.name.clone(),
                database: database.to_string(),
                configured: params.dbname.clone(),
            });
        }
    }
    if info.wal_status.as_deref() == Some("lost") {
        return Err(SlotError::SlotLost {
            slot: slot.name.clone(),
        });
    }
    Ok(SlotPlan::Resume(
        info.confirmed_flush_lsn.unwrap_or(Lsn::ZERO),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(plugin: Option<&str>, database: Option<&str>, wal_status: &str) -> SlotInfo {
        SlotInfo {
            plugin: plugin.map(str::to_string),
            active: false,
            active_pid: None,
            confirmed_flush_lsn: Some(Lsn(0x100)),
            restart_lsn: Some(Lsn(0x80)),
            wal_status: Some(wal_status.to_string()),
            database: database.map(str::to_string),
        }
    }

    fn slot(create_slot: bool) -> SlotConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("configs.yml");
        std::fs::write(
            &path,
            "replication_slots:\n  - s:\n      host: localhost\n      user: u\n      password: p\n      db_name: app\n      kns_stream: k\n",
        )
        .unwrap();
        let mut s = crate::config::Config::load(&path).unwrap().slots.remove(0);
        s.create_slot = create_slot;
        s
    }

    fn params() -> ConnectParams {
        ConnectParams::from_slot(&slot(true))
    }

    #[test]
    fn judges_the_slot_row() {
        let ok = info(Some("wal2json"), Some("app"), "reserved");
        assert_eq!(
            judge_slot(&slot(true), Some(&ok), &params()).unwrap(),
            SlotPlan::Resume(Lsn(0x100))
        );
        assert_eq!(
            judge_slot(&slot(true), None, &params()).unwrap(),
            SlotPlan::Create
        );
        let missing = judge_slot(&slot(false), None, &params()).unwrap_err();
        assert!(
            matches!(missing, SlotError::SlotMissing { .. }),
            "{missing}"
        );

        let other_db = info(Some("wal2json"), Some("billing"), "reserved");
        let e = judge_slot(&slot(true), Some(&other_db), &params()).unwrap_err();
        let text = e.to_string();
        assert!(!e.is_transient());
        assert!(text.contains("billing") && text.contains("app"), "{text}");

        let test_decoding = info(Some("test_decoding"), Some("app"), "reserved");
        let e = judge_slot(&slot(true), Some(&test_decoding), &params()).unwrap_err();
        assert!(e.to_string().contains("test_decoding"), "{e}");

        let lost = info(Some("wal2json"), Some("app"), "lost");
        let e = judge_slot(&slot(true), Some(&lost), &params()).unwrap_err();
        assert!(matches!(e, SlotError::SlotLost { .. }), "{e}");
    }
}
