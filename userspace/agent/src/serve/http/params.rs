//! Parsing and validation of path and query parameters.

use super::error::ApiError;

/// A pod UID: a UUID (36 chars with dashes) or the 32-hex-digit form of static pods.
pub fn uid(s: &str) -> Result<String, ApiError> {
    let hex_or_dash = s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let digits = s.bytes().filter(u8::is_ascii_hexdigit).count();
    let dashes_ok = s.len() == 32
        || s.bytes()
            .enumerate()
            .all(|(i, b)| (b == b'-') == matches!(i, 8 | 13 | 18 | 23));
    if hex_or_dash && digits == 32 && (s.len() == 32 || s.len() == 36) && dashes_ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ApiError::bad(
            "invalid_uid",
            format!("{s:?} is not a pod UID (expected a UUID such as 8f3c2a1e-1111-4a4a-9b9b-000000000001)"),
        ))
    }
}

/// A Kubernetes object name or namespace (RFC 1123 subdomain, at most 253 characters).
pub fn k8s_name(what: &'static str, s: &str) -> Result<String, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(s.to_string())
    } else {
        Err(ApiError::bad(
            "invalid_name",
            format!("{s:?} is not a valid {what}"),
        ))
    }
}

/// `since`: RFC 3339 time, or a duration back from now (`90s`, `5m`, `2h`), as wall-clock ns.
pub fn since(s: &str, now_wall_ns: i128) -> Result<i128, ApiError> {
    let bad = || {
        ApiError::bad(
            "invalid_since",
            format!("since={s:?}: expected RFC 3339 (2026-11-22T12:00:00Z) or a duration such as 30s, 5m, 2h"),
        )
    };
    if let Some(ns) = crate::node::clock::parse_rfc3339(s) {
        return Ok(ns);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i128 = num.parse().map_err(|_| bad())?;
    let mult: i128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    // A number of digits past the epoch's range is a bad request, not an overflow panic.
    n.checked_mul(mult)
        .and_then(|back| now_wall_ns.checked_sub(back))
        .ok_or_else(bad)
}

/// Output format: JSON unless `?format=text` or `Accept: text/plain` (and not overridden).
pub fn wants_text(format: Option<&str>, accept: Option<&str>) -> Result<bool, ApiError> {
    match format {
        Some("text") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::bad(
            "invalid_format",
            format!("format={other:?}: expected json or text"),
        )),
        None => {
            Ok(accept.is_some_and(|a| a.contains("text/plain") && !a.contains("application/json")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids() {
        assert!(uid("8f3c2a1e-1111-4a4a-9b9b-000000000001").is_ok());
        assert_eq!(
            uid("8F3C2A1E-1111-4A4A-9B9B-000000000001").unwrap(),
            "8f3c2a1e-1111-4a4a-9b9b-000000000001"
        );
        assert!(uid("0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "",
            "x",
            "../etc",
            "8f3c2a1e_1111_4a4a_9b9b_000000000001",
            "8f3c2a1e-1111-4a4a-9b9b-00000000000g",
            "8f3c2a1e1-111-4a4a-9b9b-000000000001",
        ] {
            assert!(uid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn since_forms() {
        let now = 1_000_000_000_000_000_000i128;
        assert_eq!(since("5m", now).unwrap(), now - 300_000_000_000);
        assert_eq!(since("1970-01-01T00:00:01Z", now).unwrap(), 1_000_000_000);
        assert!(since("yesterday", now).is_err());
        assert!(since("5", now).is_err());
        assert!(since("5d", now).is_err());
    }

    /// Found by the api_params fuzz target (fuzz/regressions/api_params/since-overflow): the
    /// duration times its unit overflowed i128 and panicked the handler.
    #[test]
    fn since_too_far_back_is_invalid() {
        let now = 1_000_000_000_000_000_000i128;
        let e = since("90988888888888888899999999999999s", now).unwrap_err();
        assert!(
            matches!(
                e,
                ApiError::BadRequest {
                    code: "invalid_since",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(since(&format!("{}h", i128::MAX), now).is_err());
        assert!(since("170141183460469231731687303715884105727ms", now).is_err());
    }

    #[test]
    fn names_and_formats() {
        assert!(k8s_name("namespace", "kube-system").is_ok());
        assert!(k8s_name("namespace", "Kube").is_err());
        assert!(k8s_name("name", "-x").is_err());
        assert!(wants_text(Some("text"), None).unwrap());
        assert!(wants_text(None, Some("text/plain")).unwrap());
        assert!(!wants_text(None, Some("*/*")).unwrap());
        assert!(wants_text(Some("yaml"), None).is_err());
    }
}
