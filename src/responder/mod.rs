//! The built-in SMTP responder (placeholder being written).
