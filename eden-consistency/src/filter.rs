//! The `--where` filter: one boolean SQL expression, parsed and checked before it reaches a server.
