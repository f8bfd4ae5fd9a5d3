//! The one integration-test binary. Tests run in parallel against shared servers, so
//! every test uses its own slot, stream and table names and cleans up after itself.

mod support;

mod cli;
mod e2e;
mod harness;
mod source;
