//! The `Authorization` header → a [`Credential`] (RFC 6750 §2.1, RFC 9449 §7.1). Only the header
//! is read: a token in a query string or body is never looked at (MCP authorization, "Token
//! Requirements"; M1).

use crate::error::AuthError;

/// Longest `Authorization` value accepted (tokens with many claims stay far below).
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// The authentication scheme of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449): the token is bound to a key the request proves it holds.
    Dpop,
}

/// An access token as presented, borrowed from the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    /// How the token was presented.
    pub scheme: Scheme,
    /// The token: `token68` characters only.
    pub token: &'a str,
}

/// Parses every `Authorization` header value of a request. None → [`AuthError::Missing`];
/// more than one, an unknown scheme, an empty or non-`token68` token, or an oversize value →
/// [`AuthError::MalformedHeader`].
pub fn parse<'a, I>(values: I) -> Result<Credential<'a>, AuthError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut values = values.into_iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedHeader(
            "more than one Authorization header",
        ));
    }
    if value.len() > MAX_HEADER_LEN {
        return Err(AuthError::MalformedHeader("Authorization header too long"));
    }
    let value = std::str::from_utf8(value).map_err(|_| AuthError::MalformedHeader("not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader("expected `<scheme> <token>`"))?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(AuthError::MalformedHeader("unsupported scheme"));
    };
    let token = token.trim_start_matches(' ');
    if !is_token68(token) {
        return Err(AuthError::MalformedHeader("token is not token68"));
    }
    Ok(Credential { scheme, token })
}

/// RFC 7235 §2.1 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Result<Credential<'_>, AuthError> {
        parse([v.as_bytes()])
    }

    #[test]
    fn bearer_and_dpop_are_read() {
        assert_eq!(
            one("Bearer abc.def.ghi").map(|c| c.token),
            Ok("abc.def.ghi")
        );
        assert_eq!(one("bearer abc").map(|c| c.scheme), Ok(Scheme::Bearer));
        assert_eq!(one("DPoP abc").map(|c| c.scheme), Ok(Scheme::Dpop));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(parse(std::iter::empty()), Err(AuthError::Missing));
        for bad in [
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer a b",
            "Bearer a,b",
            "Bearer ==",
            "Token abc",
        ] {
            assert!(
                matches!(one(bad), Err(AuthError::MalformedHeader(_))),
                "{bad}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_HEADER_LEN));
        assert!(matches!(one(&long), Err(AuthError::MalformedHeader(_))));
        assert!(matches!(
            parse(["Bearer a".as_bytes(), "Bearer b".as_bytes()]),
            Err(AuthError::MalformedHeader(_))
        ));
        assert!(matches!(
            parse([&b"Bearer \xff"[..]]),
            Err(AuthError::MalformedHeader(_))
        ));
    }
}
