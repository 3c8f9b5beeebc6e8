//! bcm's Postgres snapshot sink: exports of the applied state, and reading the newest back.

mod pg;

pub use pg::{Exported, PgError, PgSink, StoredExport, MIGRATOR};
