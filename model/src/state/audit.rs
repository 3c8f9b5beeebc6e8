//! The audit log's transitions: a write applied with its record, and a record
//! alone.

use super::{invalid, Applied, ClusterState};
use crate::command::{Command, Rejection, Response};
use crate::records::{AuditEntry, AuditOutcome};

impl ClusterState {
    /// Applies `inner` and records `entry` with its outcome (also before the
    /// cluster is formed: the members registering as it forms).
    pub(super) fn apply_audited(
        &mut self,
        index: u64,
        entry: &AuditEntry,
        inner: &Command,
    ) -> Applied {
        if matches!(
            inner,
            Command::Batch(_) | Command::Audited { .. } | Command::Audit { .. }
        ) {
            return invalid("an audited command holds one write");
        }
        let applied = self.apply(index, inner);
        let outcome = match &applied.response {
            Response::Rejected(r) => AuditOutcome::Refused(r.to_string()),
            _ => AuditOutcome::Ok,
        };
        self.audit.push(entry, outcome);
        applied
    }

    /// Records `entry` with `outcome`.
    pub(super) fn record_audit(&mut self, entry: &AuditEntry, outcome: &AuditOutcome) -> Applied {
        if !self.is_initialized() {
            return Applied::rejected(Rejection::NotInitialized);
        }
        self.audit.push(entry, outcome.clone());
        Applied::ok(Response::Done, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Rejection, Response};
    use crate::records::{AuditEntry, AuditOutcome};
    use crate::state::fixtures::initialized;
    use crate::state::ClusterState;

    fn entry(action: &str, target: &str) -> AuditEntry {
        AuditEntry {
            at: 42,
            actor: "alice".into(),
            addr: Some("192.0.2.7".into()),
            action: action.into(),
            target: target.into(),
            detail: String::new(),
        }
    }

    fn audited(action: &str, target: &str, inner: Command) -> Command {
        Command::Audited {
            entry: entry(action, target),
            inner: Box::new(inner),
        }
    }

    fn put(key: &str) -> Command {
        Command::PutConfig {
            key: key.into(),
            value_json: "1".into(),
            if_version: Some(0),
            at: 42,
        }
    }

    #[test]
    fn an_audited_write_answers_as_alone_and_records_its_outcome() {
        let mut s = initialized();
        let mut alone = s.clone();
        let a = s.apply(2, &audited("config.set", "k", put("k")));
        let b = alone.apply(2, &put("k"));
        assert_eq!(a.response, b.response);
        assert_eq!(a.events, b.events);
        assert_eq!(s.config, alone.config);

        // The same create again is refused: recorded as refused, with why.
        let refused = s.apply(3, &audited("config.set", "k", put("k")));
        assert!(matches!(
            refused.response,
            Response::Rejected(Rejection::VersionMismatch { .. })
        ));
        let records: Vec<_> = s.audit.newest_first().cloned().collect();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].id, records[1].id), (2, 1));
        assert_eq!(records[1].outcome, AuditOutcome::Ok);
        assert_eq!(records[1].entry, entry("config.set", "k"));
        assert!(records[0]
            .outcome
            .reason()
            .is_some_and(|r| r.contains("version mismatch")));
    }

    #[test]
    fn an_audited_batch_or_audit_is_refused_and_records_nothing() {
        let mut s = initialized();
        let before = s.clone();
        for inner in [
            Command::Batch(vec![put("a")]),
            audited("config.set", "a", put("a")),
            Command::Audit {
                entry: entry("login", "alice"),
                outcome: AuditOutcome::Ok,
            },
        ] {
            let r = s.apply(2, &audited("x", "y", inner)).response;
            assert!(
                matches!(r, Response::Rejected(Rejection::Invalid(_))),
                "{r:?}"
            );
            assert_eq!(s, before);
        }
    }

    #[test]
    fn a_record_alone_needs_a_formed_cluster() {
        let login = Command::Audit {
            entry: entry("login.failed", "alice"),
            outcome: AuditOutcome::Refused("wrong password".into()),
        };
        let mut s = ClusterState::default();
        assert_eq!(
            s.apply(1, &login).response,
            Response::Rejected(Rejection::NotInitialized)
        );
        let mut s = initialized();
        assert_eq!(s.apply(2, &login).response, Response::Done);
        let r = s.audit.newest_first().next().unwrap();
        assert_eq!((r.id, r.entry.action.as_str()), (1, "login.failed"));
    }

    #[test]
    fn an_audited_config_write_counts_as_a_write_of_its_key_in_a_batch() {
        let mut s = initialized();
        let batch = Command::Batch(vec![put("a"), audited("config.set", "a", put("a"))]);
        let Response::Batch(each) = s.apply(2, &batch).response else {
            panic!("not a batch answer")
        };
        assert!(matches!(
            each[1],
            Response::Rejected(Rejection::Conflict(_))
        ));
        // Refused by the batch, before it was applied: recorded as refused.
        let r = s.audit.newest_first().next().unwrap();
        assert!(r.outcome.reason().is_some_and(|r| r.contains("twice")));
        assert_eq!(s.audit.len(), 1);
    }
}
