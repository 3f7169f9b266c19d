//! What `build.rs` writes from the query catalogue for the resources: the
//! query files' text, the `retail` tables and the resource templates.

use super::QueryText;

include!(concat!(env!("OUT_DIR"), "/resource_catalogue.rs"));
