//! The Jobe REST API over hyper. Owned by the api work item.
