//! Which bucket ids and object keys are acceptable. Bucket ids become directory names on disk
//! and keys become folder listings, so both are checked before anything else happens.

use super::error::StorageError;

/// Longest accepted key, in bytes (storage-api's default limit).
const MAX_KEY_BYTES: usize = 1024;

/// A bucket id: letters, digits, `-`, `_` and `.`, not a dot-only name.
pub fn check_bucket(bucket: &str) -> Result<(), StorageError> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 100
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && bucket.chars().any(|c| c != '.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid_bucket_name())
    }
}

/// An object key: relative, `/`-separated, no empty, `.` or `..` segments, no control
/// characters (NUL included), at most 1024 bytes.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && !key.chars().any(char::is_control)
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in [
            "a",
            "ws/readme.md",
            "ws/dir/sub/file name (1).txt",
            "ws/ünïcode/ф.txt",
            "a/.hidden",
            "a/..b",
        ] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        for bad in [
            "",
            "/abs",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "a/",
            "nul\0byte",
            "tab\there",
            long.as_str(),
        ] {
            let err = check_key(bad).unwrap_err();
            assert_eq!(err.code, "InvalidKey", "{bad:?}");
        }
    }

    #[test]
    fn buckets() {
        assert!(check_bucket("workspace-files").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert!(check_bucket(bad).is_err(), "{bad:?}");
        }
    }
}
