//! SMTP replies (placeholder being written).
