//! The unit tier's own binary: repository tidiness checks (every tier has
//! its profile, every crate its docs). The drivers' and xtask's unit tests
//! run in this tier too (`kind(lib) | kind(bin)`).

mod tidy;
