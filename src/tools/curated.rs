//! The tools generated from `queries/` by `build.rs`.

use super::support::*;

include!(concat!(env!("OUT_DIR"), "/curated_tools.rs"));
