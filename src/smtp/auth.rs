//! SASL for SMTP AUTH (RFC 4954): the client's responses for PLAIN (RFC 4616),
//! LOGIN, CRAM-MD5 (RFC 2195) and XOAUTH2, as base64 lines. Pure functions; the
//! session runs the exchange and keeps these values out of every transcript.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};

/// Base64 of `bytes` (RFC 4954 section 4 uses the standard alphabet with padding).
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a server challenge (the text after `334 `).
pub fn unb64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text.trim())
        .map_err(|e| format!("the server's challenge is not base64: {e}"))
}

/// PLAIN: `authzid NUL authcid NUL passwd`, with an empty authzid (RFC 4616 section 2).
pub fn plain(username: &str, password: &str) -> String {
    b64(format!("\0{username}\0{password}").as_bytes())
}

/// CRAM-MD5: `username SP hex(HMAC-MD5(password, challenge))` (RFC 2195 section 2).
pub fn cram_md5(username: &str, password: &str, challenge: &[u8]) -> String {
    let mut mac = Hmac::<md5::Md5>::new_from_slice(password.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(challenge);
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    b64(format!("{username} {digest}").as_bytes())
}

/// XOAUTH2: `user=USER ^A auth=Bearer TOKEN ^A ^A`, as Google and Microsoft define it.
pub fn xoauth2(username: &str, token: &str) -> String {
    b64(format!("user={username}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_matches_rfc_4616() {
        assert_eq!(
            plain("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
    }

    #[test]
    fn cram_md5_matches_rfc_2195() {
        let challenge = unb64("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+").unwrap();
        assert_eq!(challenge, b"<1896.697170952@postoffice.reston.mci.net>");
        assert_eq!(
            cram_md5("tim", "tanstaaftanstaaf", &challenge),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
        );
    }

    #[test]
    fn xoauth2_layout() {
        let decoded = unb64(&xoauth2(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        ))
        .unwrap();
        assert_eq!(
            decoded,
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        assert!(unb64("not base64!").is_err());
    }
}
