//! The password of `coloc app set-password`: read without echo (or from
//! standard input for scripts), checked by proto's rule, and hashed with
//! bcrypt here, on the person's computer. Only the hash is sent to colocd;
//! the password never leaves this process.

use std::io::{BufRead, IsTerminal};

use coloc_proto::apps::web::{PASSWORD_COST, PasswordHash, check_password};

use crate::error::Failure;

/// Where the password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Asked twice on the terminal, without echo.
    Terminal,
    /// The first line of standard input (its line ending dropped).
    Stdin,
}

/// Reads the password from `source` and returns its bcrypt hash.
pub async fn read_and_hash(source: Source, prompt_for: &str) -> Result<PasswordHash, Failure> {
    let password = match source {
        Source::Stdin => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                Failure::usage(format!("cannot read the password from standard input: {e}"))
            })?;
            strip_line_end(line)
        }
        Source::Terminal => {
            if !std::io::stdin().is_terminal() {
                return Err(Failure::usage(
                    "standard input is not a terminal: give the password on it with --password-stdin",
                ));
            }
            let first = rpassword::prompt_password(format!("Password for {prompt_for}: "))
                .map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?;
            check(&first)?;
            let again = rpassword::prompt_password("The same password again: ")
                .map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?;
            if again != first {
                return Err(Failure::invalid(
                    "the two passwords differ; nothing was changed",
                ));
            }
            first
        }
    };
    check(&password)?;
    hash(password).await
}

fn check(password: &str) -> Result<(), Failure> {
    check_password(password).map_err(|e| Failure::invalid(e.to_string()))
}

/// `line` without its trailing "\n" or "\r\n".
fn strip_line_end(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// bcrypt at [`PASSWORD_COST`], off the async runtime (a quarter of a
/// second of CPU).
pub async fn hash(password: String) -> Result<PasswordHash, Failure> {
    let hashed = tokio::task::spawn_blocking(move || bcrypt::hash(password, PASSWORD_COST))
        .await
        .map_err(|e| Failure::generic(format!("hashing the password failed: {e}")))?
        .map_err(|e| Failure::generic(format!("hashing the password failed: {e}")))?;
    PasswordHash::new(hashed)
        .map_err(|e| Failure::generic(format!("bcrypt gave an unexpected hash: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_not_part_of_the_password() {
        assert_eq!(strip_line_end("secret\n".into()), "secret");
        assert_eq!(strip_line_end("secret\r\n".into()), "secret");
        assert_eq!(strip_line_end("secret".into()), "secret");
        assert_eq!(strip_line_end("se cret \n".into()), "se cret ");
    }

    #[tokio::test]
    async fn the_hash_verifies_and_never_contains_the_password() {
        let password = "correct horse battery staple";
        let hashed = hash(password.into()).await.unwrap();
        assert!(hashed.as_str().starts_with("$2b$12$"), "{hashed}");
        assert!(!hashed.as_str().contains(password));
        assert!(bcrypt::verify(password, hashed.as_str()).unwrap());
        assert!(!bcrypt::verify("another password", hashed.as_str()).unwrap());
    }
}
