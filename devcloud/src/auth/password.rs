//! Password hashing: bcrypt at GoTrue's cost.

const COST: u32 = 10;

pub fn hash(password: &str) -> String {
    // bcrypt only fails for a cost out of range, and ours is a constant in range.
    bcrypt::hash(password, COST).unwrap_or_default()
}

/// Constant-time comparison inside bcrypt; a malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    bcrypt::verify(password, stored).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let h = super::hash("s3cret");
        assert!(h.starts_with("$2"));
        assert!(super::verify("s3cret", &h));
        assert!(!super::verify("S3cret", &h));
        assert!(!super::verify("s3cret", "not-a-hash"));
    }
}
