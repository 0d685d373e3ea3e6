//! STARTTLS, implicit TLS, certificate checks and AUTH, against the TLS peers of
//! `tls_server.rs` (a test CA's certificates, self-signed ones, and servers that
//! misbehave), through the binary, with `--connect-to` keeping the name `mail.test`
//! for SNI and verification.

use crate::support::{assert_junit_valid, assert_well_formed, normalise, run, smtp_plan, temp_dir};
use crate::tls_server::{self_signed, Behaviour, Leaf, TestCa, TlsServer, PASSWORD, TOKEN, USER};

/// Runs `tests` (YAML test entries) against `server` as `mail.test`, returns stdout and the JUnit text.
fn run_plan(
    server: &TlsServer,
    settings: &str,
    tests: &str,
    ca_pem: Option<&str>,
) -> (i32, String, String) {
    let dir = temp_dir("tls");
    let ca = match ca_pem {
        Some(pem) => {
            std::fs::write(dir.join("ca.pem"), pem).unwrap();
            "  ca_file: ca.pem\n"
        }
        None => "",
    };
    let plan = format!("version: 1\nname: tls\nsettings:\n  helo: client.test\n  timeouts: {{ connect: 3s, reply: 3s, session: 20s }}\n{ca}{settings}targets: [{{ host: mail.test }}]\ntests:\n{tests}");
    std::fs::write(dir.join("p.yaml"), plan).unwrap();
    let out = run(smtp_plan(&dir)
        .env("SMTP_PLAN_TEST_SECRET", PASSWORD)
        .env("SMTP_PLAN_TEST_TOKEN", TOKEN)
        .args([
            "run",
            "p.yaml",
            "--concurrency",
            "1",
            "--transcripts",
            "all",
            "--junit",
            "r.xml",
            "--connect-to",
        ])
        .arg(format!("mail.test={}", server.addr)));
    let stdout = normalise(&String::from_utf8_lossy(&out.stdout));
    // Secrets must not reach stderr either; folded into what the tests search.
    let stdout = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read(dir.join("r.xml")).unwrap_or_default();
    assert_well_formed(&xml);
    assert_junit_valid(&dir.join("r.xml"));
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&xml).into_owned(),
    )
}

const STARTTLS_SESSION: &str = "  - name: starttls\n    steps:\n      - ehlo:\n        capabilities: [STARTTLS]\n      - starttls: {}\n        cert: { valid_for_days: 30, names: [mail.test] }\n      - ehlo:\n        absent: [STARTTLS]\n      - mail_from: a@b.test\n      - rcpt_to: c@d.test\n      - data: { body: hi }\n      - quit: {}\n";

fn ca_server(names: &[&str], from: i64, to: i64, behaviour: Behaviour) -> (TestCa, TlsServer) {
    let ca = TestCa::new();
    let leaf = ca.issue(names, from, to);
    let server = TlsServer::start(&leaf, behaviour);
    (ca, server)
}

#[test]
fn starttls_with_a_private_ca_passes_and_reports_the_certificate() {
    let (ca, server) = ca_server(&["mail.test"], -1, 90, Behaviour::default());
    let dir = temp_dir("tls-facts");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let plan = format!("version: 1\nname: tls\nsettings:\n  ca_file: ca.pem\ntargets: [{{ host: mail.test }}]\ntests:\n{STARTTLS_SESSION}");
    std::fs::write(dir.join("p.yaml"), plan).unwrap();
    // Default transcripts (failures only): the TLS facts are still reported.
    let out = run(smtp_plan(&dir)
        .args(["run", "p.yaml", "--junit", "r.xml", "--connect-to"])
        .arg(format!("mail.test={}", server.addr)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let xml = std::fs::read_to_string(dir.join("r.xml")).unwrap();
    for fact in [
        "TLS: TLSv1.3 TLS13_",
        "TLS certificate: subject CN=mail.test; SAN mail.test",
        "issuer CN=smtp-plan test CA",
        "TLS: certificate verified",
    ] {
        assert!(xml.contains(fact), "{fact} in {xml}");
    }
    assert!(
        !xml.contains("C: EHLO"),
        "no transcript for a passing case by default"
    );
}

#[test]
fn certificate_problems_fail_the_handshake_or_the_assertion() {
    let cases: Vec<(&str, Leaf, &str)> = {
        let ca = TestCa::new();
        vec![
            ("expired", ca.issue(&["mail.test"], -30, -1), "ERROR starttls @ mail.test:25 (0.000s)\n      tls: step 2 starttls: TLS handshake failed: invalid peer certificate: certificate expired"),
            ("wrong name", ca.issue(&["other.test"], -1, 90), "ERROR starttls @ mail.test:25 (0.000s)\n      tls: step 2 starttls: TLS handshake failed: invalid peer certificate: certificate not valid for name \"mail.test\""),
            ("short-lived", ca.issue(&["mail.test"], -1, 3), "FAIL  starttls @ mail.test:25 (0.000s)\n      step 2 starttls: the certificate expires in 3.0 days, less than valid_for_days: 30"),
        ]
        .into_iter()
        .map(|(n, leaf, want)| {
            let pem = ca.pem.clone();
            let server = TlsServer::start(&leaf, Behaviour::default());
            let (code, stdout, _) = run_plan(&server, "", STARTTLS_SESSION, Some(&pem));
            assert_eq!(code, 1, "{n}: {stdout}");
            assert!(stdout.contains(want), "{n}: want\n{want}\nin\n{stdout}");
            (n, leaf, want)
        })
        .collect()
    };
    assert_eq!(cases.len(), 3);
    // Self-signed, checked against the Mozilla roots.
    let server = TlsServer::start(&self_signed(&["mail.test"]), Behaviour::default());
    let (code, stdout, _) = run_plan(&server, "", STARTTLS_SESSION, None);
    assert_eq!(code, 1);
    assert!(
        stdout.contains(
            "tls: step 2 starttls: TLS handshake failed: invalid peer certificate: UnknownIssuer"
        ),
        "{stdout}"
    );
}

#[test]
fn verification_off_goes_on_and_says_what_it_would_have_said() {
    let server = TlsServer::start(&self_signed(&["mail.test"]), Behaviour::default());
    let (code, stdout, xml) = run_plan(&server, "  tls_verify: false\n", STARTTLS_SESSION, None);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        xml.contains("TLS: certificate NOT verified: invalid peer certificate: UnknownIssuer"),
        "{xml}"
    );
}

#[test]
fn plaintext_after_the_220_and_a_broken_handshake_are_tls_errors() {
    let steps = "  - name: starttls\n    steps:\n      - ehlo:\n      - starttls: {}\n";
    let server = TlsServer::start(
        &self_signed(&["mail.test"]),
        Behaviour {
            inject: true,
            ..Default::default()
        },
    );
    let (code, stdout, xml) = run_plan(&server, "  tls_verify: false\n", steps, None);
    assert_eq!(code, 1);
    assert!(stdout.contains("tls: step 2 starttls: the server sent 14 bytes after its 220 to STARTTLS; refusing to start TLS (response injection)"), "{stdout}\n{xml}");
    assert!(
        xml.contains("14 bytes arrived after the 220 to STARTTLS"),
        "{xml}"
    );
    let server = TlsServer::start(
        &self_signed(&["mail.test"]),
        Behaviour {
            garbage_handshake: true,
            ..Default::default()
        },
    );
    let (code, stdout, _) = run_plan(&server, "  tls_verify: false\n", steps, None);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("tls: step 2 starttls: TLS handshake failed:"),
        "{stdout}"
    );
}

#[test]
fn implicit_tls_checks_the_certificate_at_connect() {
    let (ca, server) = ca_server(
        &["mail.test"],
        -1,
        90,
        Behaviour {
            implicit: true,
            ..Default::default()
        },
    );
    let tests = "  - name: implicit\n    steps:\n      - connect: {}\n        cert: { names: [mail.test], valid_for_days: 30 }\n      - ehlo:\n        absent: [STARTTLS]\n      - quit: {}\n";
    let (code, stdout, xml) = run_plan(&server, "  tls: implicit\n", tests, Some(&ca.pem));
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("PASS  implicit @ mail.test:465"),
        "{stdout}"
    );
    assert!(xml.contains("TLS: certificate verified"), "{xml}");
}

#[test]
fn every_auth_mechanism_succeeds_and_fails_and_secrets_stay_hidden() {
    let (ca, server) = ca_server(&["mail.test"], -1, 90, Behaviour::default());
    let mut tests = String::new();
    for (mech, secret_key, good, bad) in [
        (
            "plain",
            "password",
            "${env:SMTP_PLAN_TEST_SECRET}",
            "wrong-pass",
        ),
        (
            "login",
            "password",
            "${env:SMTP_PLAN_TEST_SECRET}",
            "wrong-pass",
        ),
        (
            "cram-md5",
            "password",
            "${env:SMTP_PLAN_TEST_SECRET}",
            "wrong-pass",
        ),
        (
            "xoauth2",
            "token",
            "${env:SMTP_PLAN_TEST_TOKEN}",
            "wrong-token",
        ),
    ] {
        for (label, secret) in [("good", good), ("bad", bad)] {
            tests.push_str(&format!(
                "  - name: {mech} {label}\n    steps:\n      - ehlo:\n      - starttls: {{}}\n      - ehlo:\n      - auth: {{ mechanism: {mech}, username: {USER}, {secret_key}: \"{secret}\" }}\n"
            ));
        }
    }
    let (code, stdout, xml) = run_plan(&server, "", &tests, Some(&ca.pem));
    assert_eq!(code, 1, "{stdout}");
    for mech in ["plain", "login", "cram-md5", "xoauth2"] {
        assert!(
            stdout.contains(&format!("PASS  {mech} good @ mail.test:25")),
            "{mech}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("FAIL  {mech} bad @ mail.test:25 (0.000s)\n      step 4 auth: expected 235, got 535 5.7.8 Authentication credentials invalid")),
            "{mech}: {stdout}"
        );
    }
    assert!(
        xml.contains("C: AUTH PLAIN ***")
            && xml.contains("C: AUTH LOGIN")
            && xml.contains("C: ***"),
        "{xml}"
    );
    // Neither the secrets nor their base64 forms appear anywhere.
    let plain_b64 = smtp_plan::smtp::auth::plain(USER, PASSWORD);
    for needle in [
        PASSWORD,
        TOKEN,
        "wrong-pass",
        "wrong-token",
        plain_b64.as_str(),
        &smtp_plan::smtp::auth::b64(PASSWORD.as_bytes()),
    ] {
        assert!(
            !stdout.contains(needle) && !xml.contains(needle),
            "{needle} leaked"
        );
    }
}
