//! Resolvers written in Rust by an embedding service and registered by name
//! (`resolution: custom_rust` with `name:` in the config).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::Version;

/// A conflict resolver written in Rust by the service embedding the library.
///
/// [`CustomResolver::compare`] is asked once per pair of present versions. The library picks
/// the version that beats the most others, ties broken by the tie-break order (newer commit
/// timestamp, then region order, then row digest), so the outcome is deterministic even for a
/// comparison that is not a strict order; when it is one (transitive), that is simply its
/// greatest version and repairs converge whatever their order.
///
/// Missing rows and tombstones are handled before the resolver is asked: it only ever sees
/// versions that have a row.
pub trait CustomResolver: Send + Sync {
    /// The name used in the config (`custom_rust` rule's `name:`).
    fn name(&self) -> &str;

    /// `Greater` when `a` beats `b`, `Less` when `b` beats `a`, `Equal` when the resolver has
    /// no preference (the tie-break order decides). Each pair is asked once, in an order that
    /// does not depend on the order the regions answered.
    fn compare(&self, a: &Version, b: &Version) -> Ordering;
}

/// Named [`CustomResolver`]s, consulted when a rule says `custom_rust`.
#[derive(Clone, Default)]
pub struct Registry {
    resolvers: BTreeMap<String, Arc<dyn CustomResolver>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a resolver under its [`CustomResolver::name`]. Refuses an empty name or one
    /// already registered.
    pub fn register<R: CustomResolver + 'static>(&mut self, resolver: R) -> crate::Result<()> {
        self.register_arc(Arc::new(resolver))
    }

    /// Registers a shared resolver under its [`CustomResolver::name`].
    pub fn register_arc(&mut self, resolver: Arc<dyn CustomResolver>) -> crate::Result<()> {
        let name = resolver.name().to_string();
        if name.trim().is_empty() {
            return Err(crate::Error::Usage(
                "a custom resolver needs a non-empty name".into(),
            ));
        }
        if self.resolvers.contains_key(&name) {
            return Err(crate::Error::Usage(format!(
                "a custom resolver named `{name}` is already registered"
            )));
        }
        self.resolvers.insert(name, resolver);
        Ok(())
    }

    /// Builder form of [`Registry::register`].
    pub fn with<R: CustomResolver + 'static>(mut self, resolver: R) -> crate::Result<Registry> {
        self.register(resolver)?;
        Ok(self)
    }

    /// The resolver registered under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn CustomResolver>> {
        self.resolvers.get(name).cloned()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.resolvers.keys().map(String::as_str)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.resolvers.keys()).finish()
    }
}
