//! The checkpointer conformance suite: every backend runs these tests.
