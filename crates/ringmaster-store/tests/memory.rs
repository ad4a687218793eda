//! The in-memory backend against the shared conformance suite.

ringmaster_store::store_conformance_tests!(ringmaster_store::MemoryStore::new());
