//! The file cache behind `PUT/HEAD /files/{id}`. Owned by the api work item.
