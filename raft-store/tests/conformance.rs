//! openraft's own storage conformance suite, run against our store (WAL + sled).

use bcm_raft_store::store::{self, LogStore, StateMachineStore};
use bcm_raft_store::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct BcmStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for BcmStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let opened = store::open(dir.path())?;
        Ok((dir, opened.log, opened.state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(BcmStoreBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
