//! The check command: compare tables across regions.
