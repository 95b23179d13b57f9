//! The gpu tier. One module per family of the seed.
