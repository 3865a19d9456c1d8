//! TEMPORARY placeholder until the password file module lands.
use std::path::Path;
#[derive(Debug, Default)]
pub struct PasswordFile(std::collections::HashMap<String, Vec<u8>>);
#[derive(Debug, thiserror::Error)]
#[error("password file: {0}")]
pub struct PasswordFileError(String);
impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let t = std::fs::read_to_string(path).map_err(|e| PasswordFileError(e.to_string()))?;
        Self::parse(&t)
    }
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        Ok(PasswordFile(text.lines().filter_map(|l| l.split_once(':')).map(|(u, p)| (u.to_string(), p.as_bytes().to_vec())).collect()))
    }
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        self.0.get(user).is_some_and(|p| p == password)
    }
    pub fn len(&self) -> usize { self.0.len() }
    pub fn is_empty(&self) -> bool { self.0.is_empty() }
}
