//! The unit tier's own binary: the tests library's pure helpers. The
//! drivers' and xtask's unit tests (xtask's tidiness checks among them) run
//! in this tier too (`kind(lib) | kind(bin)`).

mod helpers;
