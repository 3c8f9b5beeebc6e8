//! Chaos: a nemesis that kills, pauses, wipes and partitions real nodes, while
//! clients record a history of register operations through random nodes, and
//! the checks of that history (linearizability, no acknowledged write lost,
//! every node converged). `scripts/chaos.sh` runs it for as long as asked.

pub mod checker;
pub mod firewall;
pub mod run;

pub use run::{run, Options, Report, FAULTS};
