//! The backup-manager role follows the living.

use std::time::{Duration, Instant};

use bcm_tests::serde_json::Value;
use bcm_tests::{wait_until, Cluster};

use crate::secs;

const GRACE: Duration = Duration::from_millis(3000);

fn holder(view: &Value) -> Option<(u64, u64)> {
    let bm = view.get("backup_manager")?;
    Some((bm.get("node_id")?.as_u64()?, bm.get("epoch")?.as_u64()?))
}

#[test]
fn the_backup_manager_role_moves_off_a_killed_holder_within_grace_plus_two_seconds() {
    let c = Cluster::builder()
        .name("backup-manager")
        .voters(3)
        .backup_manager_grace_ms(GRACE.as_millis() as u64)
        .start();

    // The cluster manager has given the role to somebody, and every node agrees.
    let (old, epoch) = wait_until(
        secs(20),
        "every node to show the same backup manager",
        || {
            let mut seen = Vec::new();
            for n in c.live_nodes() {
                let view = c.cluster(n)?;
                seen.push(holder(&view).ok_or_else(|| format!("node {n}: {view}"))?);
            }
            if seen.windows(2).all(|w| w[0] == w[1]) {
                Ok(seen[0])
            } else {
                Err(format!("nodes disagree: {seen:?}"))
            }
        },
    );
    c.log(format!("backup manager: node {old}, epoch {epoch}"));

    c.kill(old);
    let killed_at = Instant::now();
    let budget = GRACE + secs(2);
    let (new, new_epoch) = wait_until(
        budget,
        &format!("the backup-manager role to leave node {old} with an epoch above {epoch}"),
        || {
            let mut last = String::new();
            for n in c.live_nodes() {
                match c.cluster(n) {
                    Ok(view) => match holder(&view) {
                        Some((h, e)) if h != old && e > epoch => return Ok((h, e)),
                        other => last = format!("node {n} sees {other:?}"),
                    },
                    Err(e) => last = e,
                }
            }
            Err(last)
        },
    );
    let took = killed_at.elapsed();
    c.log(format!(
        "backup manager moved to node {new}, epoch {new_epoch}, {:.2}s after the kill",
        took.as_secs_f64()
    ));
    assert!(took <= budget, "took {took:?}, budget {budget:?}");
    assert!(
        c.live_nodes().contains(&new),
        "the new holder {new} is alive"
    );
}
