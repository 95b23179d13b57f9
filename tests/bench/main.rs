//! The bench tier. One module per family of the seed.
