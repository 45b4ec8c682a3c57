//! Connecting to every region concurrently, with fixed session settings and TLS.
