use std::fmt;

/// Bad input. The message names the argument, what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub argument: &'static str,
    pub message: String,
}

impl Error {
    pub fn new(argument: &'static str, message: impl Into<String>) -> Self {
        Self { argument, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.argument, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Fails with `argument: expected ...` unless `condition` holds.
pub(crate) fn ensure(condition: bool, argument: &'static str, message: impl FnOnce() -> String) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(Error::new(argument, message()))
    }
}
