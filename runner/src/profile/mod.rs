//! Language profiles (`profiles/*.toml`) and planning a job against one. Owned by the profile work item.

pub mod plan;
