//! The startup decision: the stored checkpoint against the slot PostgreSQL has.
//!
//! Owns the decision table and its log lines. The slot is always the truth for what
//! PostgreSQL will still send; the checkpoint only tells whether something was lost
//! in between (a failover without the slot, an operator drop and re-create). It
//! never changes the start position and never touches the slot.
//!
//! | slot                                   | decision                          |
//! |----------------------------------------|-----------------------------------|
//! | no checkpoint                          | start (first run)                 |
//! | at the checkpoint                      | start                             |
//! | ahead, checkpoint not final            | start (a crash after confirming)  |
//! | ahead of a *final* checkpoint          | gap: advanced by someone else     |
//! | ahead of a *dropped* checkpoint        | gap: dropped by the admin `drop`  |
//! | missing (would be created)             | gap: dropped, or lost in failover |
//! | behind the checkpoint                  | warn, start from the slot         |
//!
//! A final checkpoint is written after the last status update of a clean shutdown,
//! so the slot cannot legitimately be past it: only a re-created slot (which starts
//! at the current WAL) or another consumer moves it there. The admin `drop` leaves
//! a final checkpoint marked `dropped` at the dropped slot's position for the same
//! reason. After starting at a final checkpoint, the streamer writes a non-final one
//! before it confirms anything past it (see `Checkpointer::confirm_limit`), so a
//! crash or an SSM outage after a clean restart never looks like a gap.

use super::Checkpoint;
use crate::lsn::Lsn;

/// The slot as found before streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotSeen {
    /// It does not exist and is about to be created.
    Missing,
    /// It exists with this `confirmed_flush_lsn`.
    At(Lsn),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    NoCheckpoint,
    /// The slot is at the checkpoint, or ahead of a non-final one.
    Consistent {
        checkpoint: Lsn,
        slot: Lsn,
    },
    /// The slot is behind: its changes since `slot` are sent again (duplicates, not loss).
    Behind {
        checkpoint: Lsn,
        slot: Lsn,
    },
    /// Changes after `checkpoint` may never reach Kinesis. `slot` is None when missing;
    /// `dropped` when the checkpoint carries the admin `drop`'s mark.
    Gap {
        checkpoint: Lsn,
        slot: Option<Lsn>,
        dropped: bool,
    },
}

pub fn decide(checkpoint: Option<&Checkpoint>, seen: SlotSeen) -> Decision {
    let Some(checkpoint) = checkpoint else {
        return Decision::NoCheckpoint;
    };
    let Some(at) = checkpoint.lsn() else {
        return Decision::NoCheckpoint;
    };
    let dropped = checkpoint.dropped;
    match seen {
        SlotSeen::Missing => Decision::Gap {
            checkpoint: at,
            slot: None,
            dropped,
        },
        SlotSeen::At(slot) if slot < at => Decision::Behind {
            checkpoint: at,
            slot,
        },
        SlotSeen::At(slot) if slot > at && checkpoint.binds_the_slot() => Decision::Gap {
            checkpoint: at,
            slot: Some(slot),
            dropped,
        },
        SlotSeen::At(slot) => Decision::Consistent {
            checkpoint: at,
            slot,
        },
    }
}

/// A checkpoint gap the config does not accept: this slot must not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replication slot {slot:?}: checkpoint {parameter} says {checkpoint} was the last position delivered, but {found}; changes after {checkpoint} may never have reached Kinesis (the slot was dropped or re-created, lost in a failover, or consumed by something else). Refusing to start this slot: re-provision the consumers and backfill the tables, then set accept_checkpoint_gap: true for this slot (or delete the parameter) to start from the slot's position")]
pub struct CheckpointGap {
    pub slot: String,
    pub parameter: String,
    pub checkpoint: Lsn,
    /// The slot's position; None when it did not exist.
    pub slot_lsn: Option<Lsn>,
    found: String,
}

/// Logs the decision; Err for a gap unless `accept_gap`.
pub fn apply(
    slot: &str,
    parameter: &str,
    decision: Decision,
    accept_gap: bool,
) -> Result<(), CheckpointGap> {
    match decision {
        Decision::NoCheckpoint => {
            tracing::info!(
                slot,
                "no checkpoint in {parameter} yet: starting from the slot"
            );
        }
        Decision::Consistent {
            checkpoint,
            slot: at,
        } => {
            tracing::info!(slot, checkpoint = %checkpoint, slot_lsn = %at, "checkpoint {checkpoint}, slot at {at}: starting from the slot");
        }
        Decision::Behind {
            checkpoint,
            slot: at,
        } => {
            tracing::warn!(slot, checkpoint = %checkpoint, slot_lsn = %at, "the slot ({at}) is behind the checkpoint ({checkpoint}): PostgreSQL lost confirmed progress (a crash or a failover); starting from the slot, changes between the two are sent again");
        }
        Decision::Gap { checkpoint, .. } => {
            let Some(gap) = gap(slot, parameter, decision) else {
                return Ok(());
            };
            if !accept_gap {
                return Err(gap);
            }
            tracing::error!(slot, checkpoint = %checkpoint, "starting anyway because accept_checkpoint_gap is true: {gap}");
        }
    }
    Ok(())
}

/// What start-up would decide, read only (for `check`): a line for the report, or
/// why start-up would refuse the slot, or why the store cannot be read. `seen` is
/// `None` when the slot could not be judged (then only the store is read).
pub async fn preview(
    store: &dyn super::CheckpointStore,
    slot: &str,
    parameter: &str,
    accept_gap: bool,
    seen: Option<SlotSeen>,
) -> Result<String, String> {
    let checkpoint = store.read(parameter).await.map_err(|e| e.to_string())?;
    let Some(seen) = seen else {
        return Ok(format!("{parameter} readable"));
    };
    let decision = decide(checkpoint.as_ref(), seen);
    if let Some(gap) = gap(slot, parameter, decision) {
        return if accept_gap {
            Ok(format!("gap accepted (accept_checkpoint_gap: true): {gap}"))
        } else {
            Err(gap.to_string())
        };
    }
    Ok(match decision {
        Decision::NoCheckpoint => format!("no checkpoint in {parameter} yet"),
        Decision::Consistent { checkpoint, .. } => {
            format!("{checkpoint} in {parameter}, consistent with the slot")
        }
        Decision::Behind { checkpoint, slot } => format!(
            "{checkpoint} in {parameter}; the slot is behind it at {slot}: changes between the two will be sent again"
        ),
        Decision::Gap { .. } => String::new(),
    })
}

/// The gap a decision reports, if any; no logging (`check` shows it, [`apply`] logs it).
pub fn gap(slot: &str, parameter: &str, decision: Decision) -> Option<CheckpointGap> {
    let Decision::Gap {
        checkpoint,
        slot: at,
        dropped,
    } = decision
    else {
        return None;
    };
    let how = if dropped {
        "the admin Lambda's drop dropped the slot there, and "
    } else {
        ""
    };
    let found = match at {
        None => format!(
            "{how}the slot does not exist (it would be created at the current WAL position)"
        ),
        Some(at) if dropped => format!("{how}the slot now is at {at}, past that position"),
        Some(at) => format!("the slot is at {at}, past that final checkpoint"),
    };
    Some(CheckpointGap {
        slot: slot.to_string(),
        parameter: parameter.to_string(),
        checkpoint,
        slot_lsn: at,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(lsn: u64, is_final: bool) -> Checkpoint {
        Checkpoint {
            lsn: Lsn(lsn).to_string(),
            slot: "s".into(),
            stream: "st".into(),
            database: "db".into(),
            time: String::new(),
            is_final,
            dropped: false,
            backfill: None,
        }
    }

    #[test]
    fn decision_table() {
        use Decision::*;
        use SlotSeen::*;
        let c = Lsn(100);
        let cases = [
            (None, At(Lsn(5)), NoCheckpoint),
            (None, Missing, NoCheckpoint),
            (
                Some(cp(100, false)),
                At(c),
                Consistent {
                    checkpoint: c,
                    slot: c,
                },
            ),
            (
                Some(cp(100, true)),
                At(c),
                Consistent {
                    checkpoint: c,
                    slot: c,
                },
            ),
            (
                Some(cp(100, false)),
                At(Lsn(150)),
                Consistent {
                    checkpoint: c,
                    slot: Lsn(150),
                },
            ),
            (
                Some(cp(100, true)),
                At(Lsn(150)),
                Gap {
                    checkpoint: c,
                    slot: Some(Lsn(150)),
                    dropped: false,
                },
            ),
            (
                Some(cp(100, false)),
                Missing,
                Gap {
                    checkpoint: c,
                    slot: None,
                    dropped: false,
                },
            ),
            (
                Some(cp(100, true)),
                At(Lsn(50)),
                Behind {
                    checkpoint: c,
                    slot: Lsn(50),
                },
            ),
        ];
        for (checkpoint, seen, want) in cases {
            assert_eq!(
                decide(checkpoint.as_ref(), seen),
                want,
                "{checkpoint:?} {seen:?}"
            );
        }
    }

    #[test]
    fn a_gap_refuses_unless_accepted_and_names_both_positions() {
        let gap = Decision::Gap {
            checkpoint: Lsn(0x100),
            slot: Some(Lsn(0x900)),
            dropped: false,
        };
        let err = apply("s", "/p/s/checkpoint", gap, false).unwrap_err();
        let msg = err.to_string();
        for want in [
            "0/100",
            "0/900",
            "/p/s/checkpoint",
            "accept_checkpoint_gap: true",
            "backfill",
        ] {
            assert!(msg.contains(want), "{want:?} missing from: {msg}");
        }
        assert!(apply("s", "/p", gap, true).is_ok());
        let behind = Decision::Behind {
            checkpoint: Lsn(2),
            slot: Lsn(1),
        };
        assert!(apply("s", "/p", behind, false).is_ok(), "behind only warns");
    }

    #[test]
    fn a_dropped_checkpoint_binds_the_next_slot_and_says_so() {
        let mut mark = cp(100, true);
        mark.dropped = true;
        let seen_ahead = decide(Some(&mark), SlotSeen::At(Lsn(150)));
        assert_eq!(
            seen_ahead,
            Decision::Gap {
                checkpoint: Lsn(100),
                slot: Some(Lsn(150)),
                dropped: true
            }
        );
        // Nothing was written between the drop and the new slot: nothing lost.
        assert!(matches!(
            decide(Some(&mark), SlotSeen::At(Lsn(100))),
            Decision::Consistent { .. }
        ));
        // An older binary wrote `final: true` too; a mark without it still binds.
        mark.is_final = false;
        assert_eq!(decide(Some(&mark), SlotSeen::At(Lsn(150))), seen_ahead);
        let msg = apply("s", "/p", seen_ahead, false).unwrap_err().to_string();
        assert!(
            msg.contains("admin Lambda's drop") && msg.contains("0/96"),
            "{msg}"
        );
    }
}
