//! Every step verb and every expectation form, run by the binary against the
//! built-in responder (a persona file with faults for the latency cases) and the
//! scripted server (for the `connect` outcomes).

use crate::fault::{Act, FaultServer};
use crate::support::{normalise, run, run_plan, smtp_plan, temp_dir, PlanRun};

const VERBS: &str = r#"
version: 1
name: verbs
settings:
  helo: client.test
  timeouts: { connect: 2s, reply: 2s, data: 5s, session: 20s }
targets:
  - responder: exchange-2013
tests:
  - name: every verb
    steps:
      - connect: {}
        within: 2s
      - helo: client.test
        expect: 250
      - ehlo:
        capabilities: [PIPELINING, chunking, SIZE]
        absent: [STARTTLS, AUTH]
      - mail_from: <>
        params: [SIZE=1000, BODY=8BITMIME]
        expect: 250 2.1.0
      - rcpt_to: kate@fabrikam.com
        notify: never
        orcpt: rfc822;kate@fabrikam.com
      - data:
          headers: { Subject: every verb, X-Test: "${test.name} ${target.host} ${target.port} ${target.address}" }
          body: ".dot\n"
          size: 20KB
        expect: 250 2.6.0
        capture: { id: "<([^@>]+)@" }
      - vrfy: kate
        expect: 252 2.1.5
      - expn: staff
        expect: [502, 5.3.x]
      - rset:
      - noop: {}
      - pipeline:
          - mail_from: chris@contoso.com
          - rcpt_to: admin@fabrikam.com
            notify: [success, failure]
          - rcpt_to: nobody@fabrikam.com
            expect: 550 5.1.1
          - data: { raw: "Subject: pipelined\n\nbody ${capture.id}\n" }
            expect: 250
      - mail_from: chris@contoso.com
      - rcpt_to: postmaster@fabrikam.com
      - bdat: { headers: { Subject: chunks }, body: "hello\nworld\n", chunk_size: 100 }
      - send: "XYZZY ${capture.id}"
        expect: { code: 5xx, enhanced: 5.3.3, text: "(?i)unrecognized" }
      - quit: {}
        expect: 221 2.0.0
  - name: implicit connect and quit
    steps:
      - noop:
        expect: { not: [4xx, 5xx] }
"#;

#[test]
fn every_verb_passes_against_the_responder() {
    let PlanRun { code, stdout, xml } = run_plan("verbs", VERBS, &[], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let xml = normalise(&xml);
    for line in [
        "C: HELO client.test",
        "C: EHLO client.test",
        "C: MAIL FROM:<> SIZE=1000 BODY=8BITMIME",
        "C: RCPT TO:<kate@fabrikam.com> NOTIFY=NEVER ORCPT=rfc822;kate@fabrikam.com",
        "C: X-Test: every verb 127.0.0.1 ",
        "C: ..dot",
        "C: Subject: every verb",
        "C: From: <postmaster@client.test>",
        "C: To: <kate@fabrikam.com>",
        "C: Date: DATE",
        "-- captured id = ",
        "C: VRFY kate",
        "C: EXPN staff",
        "C: RCPT TO:<admin@fabrikam.com> NOTIFY=SUCCESS,FAILURE",
        "S: 550 5.1.1 User unknown",
        "C: BDAT ",
        " LAST",
        "S: 250 2.0.0 BDAT accepted",
        "C: XYZZY ",
        "S: 221 2.0.0 Service closing transmission channel",
    ] {
        assert!(xml.contains(line), "transcript lacks {line:?}:\n{xml}");
    }
    // The padded message: 20,000 bytes before dot-stuffing (one `.` added, and the
    // final `.CRLF`), shown as 40 lines and a count.
    assert!(
        xml.contains("more lines of message data (20004 bytes in all)"),
        "{xml}"
    );
    // The implicit QUIT of the second test is sent but not judged.
    let second = &xml[xml.find("implicit connect and quit @").unwrap()..];
    assert!(
        second.contains("C: NOOP") && second.contains("C: QUIT"),
        "{second}"
    );
}

#[test]
fn expectation_forms_fail_and_pass_as_documented() {
    let dir = temp_dir("expect");
    std::fs::write(
        dir.join("slow.yaml"),
        "name: slow\nhostname: slow.test\naccepted_domains: [fabrikam.com]\nrecipients: [kate@fabrikam.com]\nfaults:\n  - { command: NOOP, delay: 300ms }\n  - { command: RCPT, nth: 2, reply: \"451 4.3.0 Try later\" }\n",
    )
    .unwrap();
    let hang = FaultServer::start(vec![Act::Hang]);
    let close = FaultServer::start(vec![Act::Close]);
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let plan = format!(
        r#"version: 1
name: expectations
settings:
  helo: client.test
  timeouts: {{ connect: 2s, reply: 1s, session: 20s }}
targets:
  - responder: slow.yaml
tests:
  - name: within fails on a slow reply
    steps:
      - noop:
        within: 100ms
  - name: a 4xx is a failure
    steps:
      - ehlo:
      - mail_from: a@b.test
      - rcpt_to: kate@fabrikam.com
      - rcpt_to: kate@fabrikam.com
  - name: capture that does not match fails
    steps:
      - noop:
        capture: {{ x: "queued as (\\S+)" }}
  - name: not pattern
    steps:
      - noop:
        expect: {{ not: 2xx }}
  - name: refused port
    targets: [{{ host: "127.0.0.1:{refused}" }}]
    steps:
      - connect: {{}}
        expect: refused
  - name: closing port
    targets: [{{ host: "127.0.0.1:{close}" }}]
    steps:
      - connect: {{}}
        expect: closed
  - name: silent port
    targets: [{{ host: "127.0.0.1:{hang}" }}]
    steps:
      - connect: {{}}
        expect: timeout
  - name: expected refused but it greets
    steps:
      - connect: {{}}
        expect: refused
  - name: refused without expecting it
    targets: [{{ host: "127.0.0.1:{refused}" }}]
    steps:
      - ehlo:
"#,
        close = close.addr.port(),
        hang = hang.addr.port()
    );
    std::fs::write(dir.join("expect.yaml"), plan).unwrap();
    let out = run(smtp_plan(&dir).args(["run", "expect.yaml", "--concurrency", "1"]));
    let stdout = normalise(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for want in [
        "FAIL  within fails on a slow reply @ responder:slow (0.000s)\n      step 1 noop: reply took T, more than `within: 100ms` (250 2.0.0 OK)",
        "FAIL  a 4xx is a failure @ responder:slow (0.000s)\n      step 4 rcpt_to: expected 250, got 451 4.3.0 Try later",
        "FAIL  capture that does not match fails @ responder:slow (0.000s)\n      step 1 noop: capture `x`: /queued as (\\S+)/ does not match 250 2.0.0 OK",
        "FAIL  not pattern @ responder:slow (0.000s)\n      step 1 noop: expected not 2xx, got 250 2.0.0 OK",
        "PASS  refused port @ 127.0.0.1:PORT",
        "PASS  closing port @ 127.0.0.1:PORT",
        "PASS  silent port @ 127.0.0.1:PORT",
        "FAIL  expected refused but it greets @ responder:slow (0.000s)\n      step 1 connect: expected refused, got 220 slow.test",
        "ERROR refused without expecting it @ 127.0.0.1:PORT (0.000s)\n      connect: implicit connect: cannot connect to 127.0.0.1:PORT: Connection refused",
        "3 passed, 5 failed, 1 errored, 0 skipped",
    ] {
        assert!(stdout.contains(want), "want\n{want}\nin\n{stdout}");
    }
}

#[test]
fn source_address_binds_outgoing_connections() {
    let PlanRun { code, stdout, .. } = run_plan(
        "source",
        "version: 1\nname: source\nsettings:\n  source_address: 127.0.0.2\ntargets: [{ responder: exchange-2013 }]\ntests:\n  - name: t\n    steps:\n      - ehlo: x\n        expect: { code: 250, text: \"Hello \\\\[127\\\\.0\\\\.0\\\\.2\\\\]\" }\n",
        &[],
        &[],
    );
    assert_eq!(
        code,
        Some(0),
        "the responder saw the client at 127.0.0.2: {stdout}"
    );
}

#[test]
fn proxy_protocol_header_comes_first() {
    // The server reads one line (the PROXY header) before it greets: without the
    // header the client would wait for a greeting that never comes.
    let server = FaultServer::start(vec![
        Act::Read,
        crate::fault::send("220 behind a proxy\r\n"),
        Act::Read,
        crate::fault::send("250 ok\r\n"),
    ]);
    let plan = format!(
        "version: 1\nname: proxy\nsettings:\n  proxy_protocol: v1\n  timeouts: {{ reply: 2s }}\ntargets: [{{ host: \"127.0.0.1:{}\" }}]\ntests:\n  - name: t\n    steps:\n      - ehlo: x\n",
        server.addr.port()
    );
    let PlanRun { code, stdout, xml } = run_plan("proxy", &plan, &[], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        xml.contains("-- PROXY protocol V1 header: 127.0.0.1:"),
        "{xml}"
    );
}

#[test]
fn auth_after_a_refused_starttls_is_not_sent_in_clear() {
    let server = FaultServer::start(vec![
        crate::fault::send("220 no tls here\r\n"),
        Act::Read,
        crate::fault::send("250-x\r\n250 STARTTLS\r\n"),
        Act::Read,
        crate::fault::send("454 4.7.0 TLS not available\r\n"),
        Act::Read,
        crate::fault::send("235 would have taken it\r\n"),
    ]);
    let plan = format!(
        "version: 1\nname: clear\ntargets: [{{ host: \"127.0.0.1:{}\" }}]\ntests:\n  - name: t\n    steps:\n      - ehlo: x\n      - starttls: {{}}\n        expect: [220, 454]\n      - auth: {{ mechanism: plain, username: u, password: secret-pass }}\n",
        server.addr.port()
    );
    let PlanRun { code, stdout, xml } = run_plan("auth-clear", &plan, &[], &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout
            .contains("tls: step 3 auth: refusing to send credentials: the connection is not TLS"),
        "{stdout}"
    );
    assert!(!xml.contains("AUTH PLAIN"), "{xml}");
}
