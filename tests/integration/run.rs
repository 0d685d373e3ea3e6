//! `smtp-plan run` end to end: the demo plans against the built-in responder
//! (golden console and JUnit output), every fault of the scripted server in one
//! run beside a passing case, and the report's validity.

use crate::fault::{send, Act, FaultServer};
use crate::support::{
    assert_golden, assert_junit_valid, assert_well_formed, normalise, root, run, smtp_plan,
    temp_dir,
};
use std::time::Duration;

const GREETING: &str = "220 fault.test ESMTP\r\n";

#[test]
fn demo_passes_and_writes_a_junit_report() {
    let dir = temp_dir("demo");
    let report = dir.join("report.xml");
    let out = run(smtp_plan(&root())
        .args(["run", "plans/demo.yaml", "--concurrency", "1", "--junit"])
        .arg(&report));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_golden(
        &root().join("tests/golden/demo.console"),
        &normalise(&stdout),
    );
    let xml = std::fs::read(&report).expect("report written");
    assert_well_formed(&xml);
    assert_golden(
        &root().join("tests/golden/demo.junit.xml"),
        &normalise(&String::from_utf8_lossy(&xml)),
    );
    assert_junit_valid(&report);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "only report.xml remains: {leftovers:?}");
}

#[test]
fn failing_demo_shows_the_step_and_the_reply() {
    let dir = temp_dir("demo-failing");
    let report = dir.join("report.xml");
    let out = run(smtp_plan(&root())
        .args([
            "run",
            "plans/demo-failing.yaml",
            "--concurrency",
            "1",
            "--junit",
        ])
        .arg(&report));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_golden(
        &root().join("tests/golden/demo-failing.console"),
        &normalise(&stdout),
    );
    let xml = std::fs::read(&report).unwrap();
    assert_well_formed(&xml);
    assert_golden(
        &root().join("tests/golden/demo-failing.junit.xml"),
        &normalise(&String::from_utf8_lossy(&xml)),
    );
    assert_junit_valid(&report);
}

#[test]
fn transcripts_flag_and_filter() {
    let dir = temp_dir("flags");
    let report = dir.join("r.xml");
    let out = run(smtp_plan(&root())
        .args([
            "run",
            "plans/demo.yaml",
            "--transcripts",
            "all",
            "--filter",
            "unknown user",
            "--junit",
        ])
        .arg(&report));
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PASS  unknown user is rejected @ responder:exchange-2013"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 passed, 0 failed, 0 errored, 0 skipped"),
        "{stdout}"
    );
    let xml = String::from_utf8(std::fs::read(&report).unwrap()).unwrap();
    assert!(xml.contains("<system-out><![CDATA["), "{xml}");
    assert!(xml.contains("S: 550 5.1.1 User unknown"), "{xml}");
    let out = run(smtp_plan(&root()).args(["run", "plans/demo.yaml", "--filter", "no such case"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unwritable_report_path_fails_before_connecting() {
    let out = run(smtp_plan(&root()).args([
        "run",
        "plans/demo.yaml",
        "--junit",
        "/nonexistent-dir/x/report.xml",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "nothing ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the JUnit report"));
}

#[test]
fn an_invalid_plan_runs_nothing() {
    let out = run(smtp_plan(&root().join("tests/fixtures/invalid")).args(["run", "version.yaml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// One fault: a script for the server, and what the case must report.
struct Fault {
    name: &'static str,
    script: Vec<Act>,
    steps: &'static str,
    want: &'static str,
}

fn faults() -> Vec<Fault> {
    let after_ehlo = |mut rest: Vec<Act>| {
        let mut v = vec![
            send(GREETING),
            Act::Read,
            send("250-fault.test\r\n250 PIPELINING\r\n"),
        ];
        v.append(&mut rest);
        v
    };
    vec![
        Fault {
            name: "silent server",
            script: vec![Act::Hang],
            steps: "      - ehlo: x\n",
            want: "ERROR silent server @ 127.0.0.1:PORT (0.000s)\n      timeout: implicit connect: greeting timeout after 1s while waiting for the server's greeting",
        },
        Fault {
            name: "not smtp",
            script: vec![send("HTTP/1.1 400 Bad Request\r\n\r\n")],
            steps: "      - ehlo: x\n",
            want: "ERROR not smtp @ 127.0.0.1:PORT (0.000s)\n      protocol: implicit connect: not an SMTP reply",
        },
        Fault {
            name: "closes after greeting",
            script: vec![send(GREETING), Act::Close],
            steps: "      - ehlo: x\n",
            // The server's close races the client's EHLO: the client sees the FIN,
            // or the reset the server's kernel sends for the unread EHLO.
            want: "ERROR closes after greeting @ 127.0.0.1:PORT (0.000s)\n      protocol: step 1 ehlo: connection ",
        },
        Fault {
            name: "greets with 554",
            script: vec![send("554 5.7.1 No SMTP service here\r\n")],
            steps: "      - ehlo: x\n",
            want: "FAIL  greets with 554 @ 127.0.0.1:PORT (0.000s)\n      implicit connect: expected 220, got 554 5.7.1 No SMTP service here",
        },
        Fault {
            name: "421 mid-session",
            script: after_ehlo(vec![Act::Read, send("421 4.3.2 Service shutting down\r\n"), Act::Close]),
            steps: "      - ehlo: x\n      - mail_from: a@b.test\n",
            want: "FAIL  421 mid-session @ 127.0.0.1:PORT (0.000s)\n      step 2 mail_from: expected 250, got 421 4.3.2 Service shutting down",
        },
        Fault {
            name: "mixed codes",
            script: vec![send("220-fault.test\r\n250 ESMTP\r\n")],
            steps: "      - ehlo: x\n",
            want: "ERROR mixed codes @ 127.0.0.1:PORT (0.000s)\n      protocol: implicit connect:",
        },
        Fault {
            name: "one byte a second",
            script: vec![Act::Trickle(GREETING.as_bytes().to_vec(), Duration::from_secs(1))],
            steps: "      - ehlo: x\n",
            want: "ERROR one byte a second @ 127.0.0.1:PORT (0.000s)\n      timeout: implicit connect: greeting timeout after 1s while waiting for the server's greeting",
        },
        Fault {
            name: "100,000 continuation lines",
            script: vec![send(GREETING), Act::Read, Act::Send("250-x\r\n".repeat(100_000).into_bytes()), Act::Hang],
            steps: "      - ehlo: x\n",
            want: "ERROR 100,000 continuation lines @ 127.0.0.1:PORT (0.000s)\n      protocol: step 1 ehlo: reply with more than 1000 lines",
        },
        Fault {
            name: "stops reading during data",
            script: after_ehlo(vec![Act::Read, send("250 ok\r\n"), Act::Read, send("250 ok\r\n"), Act::Read, send("354 go\r\n"), Act::Hang]),
            steps: "      - ehlo: x\n      - mail_from: a@b.test\n      - rcpt_to: c@d.test\n      - data: { body: hello, size: 20MB }\n",
            want: "ERROR stops reading during data @ 127.0.0.1:PORT (0.000s)\n      timeout: step 4 data: data timeout after 2s while sending the message",
        },
        Fault {
            name: "plaintext after the 220 to starttls",
            script: after_ehlo(vec![Act::Read, send("220 2.0.0 Ready\r\n"), Act::Pause(Duration::from_millis(100)), send("250 not encrypted\r\n"), Act::Hang]),
            steps: "      - ehlo: x\n      - starttls: {}\n",
            want: "ERROR plaintext after the 220 to starttls @ 127.0.0.1:PORT (0.000s)\n      tls: step 2 starttls:",
        },
        Fault {
            name: "endless line",
            script: vec![Act::Send(vec![b'2'; 10 * 1024 * 1024]), Act::Hang],
            steps: "      - ehlo: x\n",
            want: "ERROR endless line @ 127.0.0.1:PORT (0.000s)\n      protocol: implicit connect:",
        },
        Fault {
            name: "closes inside a multi-line reply",
            script: vec![send(GREETING), Act::Read, send("250-fault.test\r\n250-SIZE"), Act::Close],
            steps: "      - ehlo: x\n",
            want: "ERROR closes inside a multi-line reply @ 127.0.0.1:PORT (0.000s)\n      protocol: step 1 ehlo: connection closed in the middle of a reply",
        },
        Fault {
            name: "hostile bytes",
            script: vec![send("220 \u{1b}[31m ]]> <x> & \"q\"\r\n"), Act::Send(b"\xff\xfe\x00\r\n".to_vec())],
            steps: "      - ehlo: x\n",
            want: "ERROR hostile bytes @ 127.0.0.1:PORT (0.000s)\n      protocol: step 1 ehlo:",
        },
        Fault {
            name: "reset during data",
            script: after_ehlo(vec![
                Act::Read,
                send("250 ok\r\n"),
                Act::Read,
                send("250 ok\r\n"),
                Act::Read,
                send("354 go\r\n"),
                Act::Pause(Duration::from_millis(50)),
                Act::Reset,
            ]),
            steps: "      - ehlo: x\n      - mail_from: a@b.test\n      - rcpt_to: c@d.test\n      - data: { body: hello, size: 4MB }\n",
            want: "ERROR reset during data @ 127.0.0.1:PORT (0.000s)\n      protocol: step 4 data:",
        },
        Fault {
            name: "sloppy but readable replies",
            script: vec![send("220 fault.test ESMTP\n"), Act::Read, send("250-fault.test\r\n250SIZE 1000\r\n"), Act::Read, send("250 caf\u{e9}\r\n")],
            steps: "      - ehlo: x\n      - mail_from: a@b.test\n        expect: 251\n",
            want: "FAIL  sloppy but readable replies @ 127.0.0.1:PORT (0.000s)\n      step 2 mail_from: expected 251, got 250 caf\\xc3\\xa9",
        },
        Fault {
            name: "two replies to one command",
            script: after_ehlo(vec![Act::Read, send("250 ok\r\n250 surprise\r\n"), Act::Read, send("250 ok\r\n")]),
            steps: "      - ehlo: x\n      - mail_from: a@b.test\n      - rcpt_to: c@d.test\n        expect: 550\n",
            want: "FAIL  two replies to one command @ 127.0.0.1:PORT (0.000s)\n      step 3 rcpt_to: expected 550, got 250 surprise",
        },
    ]
}

#[test]
fn every_fault_is_reported_and_the_rest_of_the_run_goes_on() {
    let dir = temp_dir("faults");
    let faults = faults();
    let servers: Vec<FaultServer> = faults
        .iter()
        .map(|f| FaultServer::start(f.script.clone()))
        .collect();
    let mut plan = String::from(
        "version: 1\nname: faults\nsettings:\n  helo: client.test\n  timeouts: { connect: 2s, reply: 1s, data: 2s, session: 10s }\ntargets:\n  - responder: exchange-2013\ntests:\n  - name: passing case\n    steps:\n      - ehlo: x\n",
    );
    for (f, s) in faults.iter().zip(&servers) {
        plan.push_str(&format!(
            "  - name: {}\n    targets: [{{ host: \"127.0.0.1:{}\" }}]\n    steps:\n{}",
            f.name,
            s.addr.port(),
            f.steps
        ));
    }
    std::fs::write(dir.join("faults.yaml"), plan).unwrap();
    let report = dir.join("report.xml");
    let started = std::time::Instant::now();
    let out = run(smtp_plan(&dir).args([
        "run",
        "faults.yaml",
        "--transcripts",
        "all",
        "--junit",
        "report.xml",
    ]));
    let took = started.elapsed();
    let stdout = normalise(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("PASS  passing case @ responder:exchange-2013"),
        "{stdout}"
    );
    for f in &faults {
        assert!(
            stdout.contains(f.want),
            "{}: want\n{}\nin\n{stdout}",
            f.name,
            f.want
        );
    }
    let failures = 4;
    assert_eq!(
        faults.len(),
        16,
        "the fault list of the issue, and a few more"
    );
    let summary = format!(
        "1 passed, {failures} failed, {} errored, 0 skipped",
        faults.len() - failures
    );
    assert!(stdout.contains(&summary), "{stdout}");
    // Generous bound: every case gives up within its own timeouts (1s reply, 10s session).
    assert!(took < Duration::from_secs(30), "the run took {took:?}");
    let xml = std::fs::read(&report).unwrap();
    assert_well_formed(&xml);
    let text = String::from_utf8(xml).unwrap();
    assert!(
        text.contains("]]]]><![CDATA[>"),
        "`]]>` from the server is split in CDATA"
    );
    assert!(text.contains("\\x1b[31m"), "ESC is shown escaped");
    for note in [
        "-- protocol violation: line 1 of the reply ends in a bare LF, not CRLF",
        "-- protocol violation: line 2 of the reply has no space or hyphen after its code",
        "-- protocol violation: line 1 of the reply holds control or non-ASCII bytes",
    ] {
        assert!(text.contains(note), "{note}");
    }
    assert_junit_valid(&report);
}

#[test]
fn case_names_stay_unique_across_plans() {
    let dir = temp_dir("two-plans");
    let report = dir.join("r.xml");
    let out = run(smtp_plan(&root())
        .args([
            "run",
            "plans/demo.yaml",
            "plans/demo.yaml",
            "--filter",
            "anonymous",
            "--junit",
        ])
        .arg(&report));
    assert_eq!(out.status.code(), Some(0));
    let xml = String::from_utf8(std::fs::read(&report).unwrap()).unwrap();
    assert!(xml.contains(r#"testcase name="Exchange runbook demo / anonymous delivery @ responder:exchange-2013""#), "{xml}");
    assert!(xml.contains(r#"testcase name="Exchange runbook demo / anonymous delivery @ responder:exchange-2013 [2]""#), "{xml}");
    assert_junit_valid(&report);
}

#[test]
fn sigint_and_sigterm_skip_what_is_unfinished_and_write_the_report() {
    for signal in ["-INT", "-TERM"] {
        let hang = FaultServer::start(vec![Act::Hang]);
        let dir = temp_dir("interrupt");
        let plan = format!(
            "version: 1\nname: interrupted\nsettings:\n  timeouts: {{ reply: 1m, session: 2m }}\ntargets: [{{ responder: exchange-2013 }}]\ntests:\n  - name: quick\n    steps:\n      - ehlo: x\n  - name: stuck\n    targets: [{{ host: \"127.0.0.1:{}\" }}]\n    steps:\n      - ehlo: x\n  - name: never started\n    targets: [{{ host: \"127.0.0.1:{}\" }}]\n    steps:\n      - ehlo: x\n",
            hang.addr.port(),
            hang.addr.port()
        );
        std::fs::write(dir.join("p.yaml"), plan).unwrap();
        let child = smtp_plan(&dir)
            .args(["run", "p.yaml", "--concurrency", "1", "--junit", "r.xml"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let killed = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(130), "{signal}: {stdout}");
        assert!(
            stdout.contains("PASS  quick @ responder:exchange-2013"),
            "{stdout}"
        );
        assert!(stdout.contains("SKIP  stuck @ 127.0.0.1:"), "{stdout}");
        assert!(
            stdout.contains("1 passed, 0 failed, 0 errored, 2 skipped"),
            "{stdout}"
        );
        let xml = std::fs::read(dir.join("r.xml")).expect("the report is written");
        assert_well_formed(&xml);
        let text = String::from_utf8_lossy(&xml);
        assert!(
            text.contains("interrupted while running")
                && text.contains("not run: the run was interrupted"),
            "{text}"
        );
        assert_junit_valid(&dir.join("r.xml"));
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 2, "no temporary file is left: {files:?}");
    }
}

#[test]
fn tls_demo_passes_and_never_shows_the_password() {
    let dir = temp_dir("demo-tls");
    let report = dir.join("r.xml");
    let out = run(smtp_plan(&root())
        .env("DEMO_PASSWORD", "Pa55w.rd")
        .args([
            "run",
            "plans/demo-tls.yaml",
            "--transcripts",
            "all",
            "--junit",
        ])
        .arg(&report));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(xml.contains("C: AUTH PLAIN ***"), "{xml}");
    assert!(
        xml.contains("TLS: certificate NOT verified: invalid peer certificate: UnknownIssuer"),
        "{xml}"
    );
    for leak in ["Pa55w.rd", "not-the-password"] {
        assert!(
            !xml.contains(leak) && !stdout.contains(leak),
            "{leak} leaked"
        );
    }
    assert_junit_valid(&report);
}
