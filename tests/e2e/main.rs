//! The e2e tier. One module per family of the seed.
