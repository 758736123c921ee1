//! Recovery across the stack, through the connector interface only: what state each source
//! is in now (`survey`). Assessment, drills and recovery plans build here.

pub mod survey;
