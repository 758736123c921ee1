//! Recovery across the stack, through the connector interface only: what state each source
//! is in now (`survey`), the stack with its targets and scenarios (`stack`), the assessment
//! against the targets (`assess`), drills in sandboxes (`drill`), and recovery by scenario
//! (`recover`) to a point (`point`).

pub mod assess;
pub mod drill;
pub mod point;
pub mod recover;
pub mod stack;
pub mod survey;
