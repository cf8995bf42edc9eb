//! Support code for the tdist examples.
