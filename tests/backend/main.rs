//! The backend tier. One module per family of the seed.
