//! End-to-end tests of the real `eden-reconcile` binary.
