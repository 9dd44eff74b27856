//! One module per subcommand.

pub(crate) mod labels;
pub(crate) mod policy;
