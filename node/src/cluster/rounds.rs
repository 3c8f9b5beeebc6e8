//! Shared rounds: many callers, one piece of work, for work whose answer is good
//! for every caller that arrived before it *started*, such as a ReadIndex round (a
//! linearizable read may use any leadership confirmation that began after the read
//! arrived).
//!
//! A caller that finds no round running runs one itself, in its own task (no
//! hand-off, nothing spawned). A caller that finds one running waits for the next,
//! which the first of the waiters starts when the running one ends; all of them
//! take its answer. A caller that gives up (its future is dropped) mid-round
//! abandons the round: the waiters see that and start another.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;

pub struct Rounds<R> {
    state: Mutex<State>,
    /// The latest round to end: (its number, its answer, None when abandoned).
    ended: watch::Sender<Option<(u64, Option<R>)>>,
}

struct State {
    /// Number of the latest round started.
    started: u64,
    running: bool,
}

impl<R: Clone + Send + Sync> Default for Rounds<R> {
    fn default() -> Self {
        Rounds {
            state: Mutex::new(State {
                started: 0,
                running: false,
            }),
            ended: watch::Sender::new(None),
        }
    }
}

impl<R: Clone + Send + Sync> Rounds<R> {
    /// The answer of a run of `round` that started after this call.
    pub async fn run<Fut: Future<Output = R>>(&self, round: impl Fn() -> Fut) -> R {
        let mut ended = self.ended.subscribe();
        let mut need = self.lock().started + 1;
        loop {
            // Ok(the number of the round this caller starts), or Err(the running one).
            let turn = {
                let mut s = self.lock();
                if s.running {
                    Err(s.started)
                } else {
                    s.running = true;
                    s.started += 1;
                    Ok(s.started)
                }
            };
            let current = match turn {
                Err(current) => current,
                Ok(number) => {
                    let mut running = Running {
                        rounds: self,
                        number,
                        answer: None,
                    };
                    let answer = round().await;
                    running.answer = Some(answer.clone());
                    return answer;
                }
            };
            // Wait for the running round to end; it serves only if it started
            // after this call. Otherwise start (or join) the next.
            let last = ended
                .wait_for(|e| e.as_ref().is_some_and(|(n, _)| *n >= current))
                .await
                .expect("the sender lives in self")
                .clone();
            match last {
                Some((n, Some(answer))) if n >= need => return answer,
                // Abandoned (its caller went away): a later round will do.
                Some((n, None)) if n >= need => need = n + 1,
                _ => {}
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("rounds lock")
    }
}

/// Ends a round, when the caller that runs it returns or goes away.
struct Running<'a, R: Clone + Send + Sync> {
    rounds: &'a Rounds<R>,
    number: u64,
    answer: Option<R>,
}

impl<R: Clone + Send + Sync> Drop for Running<'_, R> {
    fn drop(&mut self) {
        let mut s = self.rounds.lock();
        s.running = false;
        self.rounds
            .ended
            .send_replace(Some((self.number, self.answer.take())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    // These tests run on tokio's current-thread runtime (the default of
    // #[tokio::test]): `yield_now` lets every spawned task run to its next await,
    // so "it is waiting" is a fact here, not a guess.
    async fn settle() {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn callers_that_arrive_during_a_round_share_the_next_one() {
        let rounds = Arc::new(Rounds::<u64>::default());
        let runs = Arc::new(AtomicU64::new(0));
        // Each round ends when the test releases it.
        let gate = Arc::new(Semaphore::new(0));
        let caller = || {
            let (rounds, runs, gate) = (rounds.clone(), runs.clone(), gate.clone());
            tokio::spawn(async move {
                rounds
                    .run(|| async {
                        gate.acquire().await.expect("open").forget();
                        runs.fetch_add(1, Ordering::SeqCst) + 1
                    })
                    .await
            })
        };
        let first = caller();
        settle().await;
        assert!(rounds.lock().running, "round 1 runs");
        // Ten callers arrive while round 1 runs: none may take round 1's answer.
        let later: Vec<_> = (0..10).map(|_| caller()).collect();
        settle().await;
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), 1);
        settle().await;
        assert_eq!(rounds.lock().started, 2, "one of them started round 2");
        gate.add_permits(1);
        for h in later {
            assert_eq!(h.await.unwrap(), 2, "they share round 2");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_abandoned_round_is_replaced_for_those_waiting() {
        let rounds = Arc::new(Rounds::<&'static str>::default());
        let never = Arc::new(Semaphore::new(0));
        let slow = tokio::spawn({
            let (rounds, never) = (rounds.clone(), never.clone());
            async move {
                rounds
                    .run(|| async {
                        let _ = never.acquire().await;
                        "never"
                    })
                    .await
            }
        });
        settle().await;
        let waiting = tokio::spawn({
            let rounds = rounds.clone();
            async move { rounds.run(|| async { "fresh" }).await }
        });
        settle().await;
        assert!(!waiting.is_finished(), "it waits for the running round");
        slow.abort();
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter is not stranded")
            .unwrap();
        assert_eq!(answer, "fresh");
    }
}
