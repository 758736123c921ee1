//! Recovery across the stack, through the connector interface only: what state each source
//! is in now (`survey`), the stack with its targets and scenarios (`stack`). Assessment, drills
//! and recovery plans build here.

pub mod assess;
pub mod drill;
pub mod point;
pub mod recover;
pub mod stack;
pub mod survey;
