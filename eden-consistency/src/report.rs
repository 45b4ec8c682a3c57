//! Report types that serialize to the contract's JSON and print for humans.
