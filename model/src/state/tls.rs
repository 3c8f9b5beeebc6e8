//! Applying the cluster CA's commands: the first CA, a rotation with its overlap,
//! and renewing every node certificate.

use super::{invalid, Applied, ClusterState};
use crate::command::Response;
use crate::records::tls::{ClusterCa, ClusterTls};
use crate::records::{Millis, StateEvent};

impl ClusterState {
    pub(super) fn add_cluster_ca(
        &mut self,
        ca: &ClusterCa,
        retire_previous_at: Option<Millis>,
        at: Millis,
    ) -> Applied {
        if ca.cert_pem.is_empty() || ca.sealed_key.is_empty() {
            return invalid("a CA needs its certificate and its sealed key");
        }
        let tls = self.tls.get_or_insert_with(ClusterTls::default);
        match retire_previous_at {
            None if !tls.cas.is_empty() => return Applied::ok(Response::Done, Vec::new()),
            None => {}
            Some(t) => {
                if tls.cas.is_empty() {
                    return invalid("there is no CA to rotate yet");
                }
                // CAs retired already are forgotten; the others overlap with the new one.
                tls.cas.retain(|c| c.retire_at.is_none_or(|r| r > at));
                for c in &mut tls.cas {
                    c.retire_at = Some(c.retire_at.map_or(t, |r| r.min(t)));
                }
            }
        }
        let mut ca = ca.clone();
        ca.retire_at = None;
        tls.cas.push(ca);
        Applied::ok(Response::Done, vec![StateEvent::ClusterTlsChanged])
    }

    pub(super) fn renew_node_certs(&mut self, at: Millis) -> Applied {
        let Some(tls) = self.tls.as_mut() else {
            return invalid("this cluster has no CA (its nodes talk plaintext)");
        };
        tls.renew_before = tls.renew_before.max(at);
        Applied::ok(Response::Done, vec![StateEvent::ClusterTlsChanged])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Rejection};

    fn ca(name: &str, created: Millis) -> ClusterCa {
        ClusterCa {
            cert_pem: name.into(),
            cross_pem: None,
            sealed_key: vec![1, 2, 3],
            created,
            retire_at: None,
        }
    }

    #[test]
    fn the_first_ca_is_set_once_and_a_rotation_overlaps_then_forgets_the_old() {
        let mut s = ClusterState::default();
        let first = |c: ClusterCa| Command::AddClusterCa {
            ca: c,
            retire_previous_at: None,
            at: 1,
        };
        assert!(matches!(
            s.apply(1, &first(ca("a", 1))).response,
            Response::Done
        ));
        // A second "first" CA (a peer's copy) changes nothing.
        s.apply(2, &first(ca("b", 2)));
        let tls = s.tls.clone().unwrap();
        assert_eq!(tls.cas.len(), 1);
        assert_eq!(tls.issuing().unwrap().cert_pem, "a");

        let rotate = |c: ClusterCa, at: Millis| Command::AddClusterCa {
            ca: c,
            retire_previous_at: Some(at + 100),
            at,
        };
        s.apply(3, &rotate(ca("c", 10), 10));
        let tls = s.tls.clone().unwrap();
        assert_eq!(tls.issuing().unwrap().cert_pem, "c");
        let trusted = |t: &ClusterTls, now| {
            t.trusted_at(now)
                .map(|c| c.cert_pem.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(trusted(&tls, 50), ["a", "c"]);
        assert_eq!(trusted(&tls, 110), ["c"]);
        // The next rotation, after the overlap, drops the retired CA.
        s.apply(4, &rotate(ca("d", 200), 200));
        let tls = s.tls.clone().unwrap();
        let all: Vec<_> = tls.cas.iter().map(|c| c.cert_pem.as_str()).collect();
        assert_eq!(all, ["c", "d"]);
    }

    #[test]
    fn renewal_needs_a_ca_and_only_moves_forward() {
        let mut s = ClusterState::default();
        let renew = |at| Command::RenewNodeCerts { at };
        assert!(matches!(
            s.apply(1, &renew(5)).response,
            Response::Rejected(Rejection::Invalid(_))
        ));
        s.apply(
            2,
            &Command::AddClusterCa {
                ca: ca("a", 1),
                retire_previous_at: None,
                at: 1,
            },
        );
        s.apply(3, &renew(50));
        s.apply(4, &renew(20));
        assert_eq!(s.tls.unwrap().renew_before, 50);
    }
}
