//! The fault tier. One module per family of the seed.
