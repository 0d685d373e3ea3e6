//! MX resolution end to end, against the in-process DNS server (`dns.rs`) and
//! scripted SMTP servers on 127.0.0.x: `smtp-plan mx`, and `run` with `domain:`
//! targets (preference order, fallback, `mx: all`, implicit MX, null MX, no route,
//! SERVFAIL, timeouts, CNAMEs, address fallback, `--connect-to`, the cache).

use crate::dns::{TestDns, CASES};
use crate::fault::{send, Act, FaultServer};
use crate::support::{assert_golden, normalise, root, run, run_plan, smtp_plan, PlanRun};
use std::net::SocketAddr;

/// A tiny SMTP server: greets, answers EHLO, and lets the client go.
fn smtp_script() -> Vec<Act> {
    vec![
        send("220 mx ESMTP\r\n"),
        Act::Read,
        send("250 mx\r\n"),
        Act::Read,
        send("221 bye\r\n"),
    ]
}

/// SMTP servers on the given loopback addresses, all on one port.
fn servers_on(ips: &[&str]) -> (u16, Vec<FaultServer>) {
    for _ in 0..20 {
        let first =
            FaultServer::start_on(format!("{}:0", ips[0]).parse().unwrap(), smtp_script()).unwrap();
        let port = first.addr.port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match FaultServer::start_on(SocketAddr::new(ip.parse().unwrap(), port), smtp_script()) {
                Ok(s) => all.push(s),
                Err(_) => break,
            }
        }
        if all.len() == ips.len() {
            return (port, all);
        }
    }
    panic!("no port free on all of {ips:?}");
}

#[test]
fn mx_command_reports_every_kind_of_answer() {
    let dns = TestDns::start(CASES);
    let resolver = dns.addr.to_string();
    let domains = [
        "multi.test",
        "implicit-a.test",
        "implicit-aaaa.test",
        "implicit-both.test",
        "cname.test",
        "nullmx.test",
        "noaddr.test",
        "nomail.test",
        "nothing.test",
        "servfail.test",
    ];
    let out = run(smtp_plan(&root())
        .args(["mx", "--resolver", &resolver])
        .args(domains));
    assert_eq!(
        out.status.code(),
        Some(1),
        "not every domain has a mail route"
    );
    let text = normalise(&String::from_utf8_lossy(&out.stdout)).replace(&resolver, "RESOLVER");
    let text = regex::Regex::new(r"\(\d+ ms\)")
        .unwrap()
        .replace_all(&text, "(T ms)")
        .into_owned();
    assert_golden(&root().join("tests/golden/mx.txt"), &text);

    let out = run(smtp_plan(&root())
        .args(["mx", "--json", "--resolver", &resolver])
        .args(domains));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let status: Vec<&str> = json["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        ["mx", "implicit", "implicit", "implicit", "mx", "null", "mx", "none", "none", "error"]
    );
    let multi = &json["domains"][0]["hosts"];
    let hosts: Vec<(u64, &str, &str)> = multi
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["preference"].as_u64().unwrap(),
                h["host"].as_str().unwrap(),
                h["addresses"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            (10, "mx1.multi.test", "127.0.0.11"),
            (20, "mx2.multi.test", "127.0.0.12"),
            (30, "mx3.multi.test", "127.0.0.13")
        ]
    );
    assert_eq!(json["domains"][2]["hosts"][0]["addresses"][0], "::1");
    assert_eq!(json["domains"][4]["hosts"][0]["addresses"][0], "127.0.0.41");
    assert!(json["domains"][6]["hosts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("NXDOMAIN"));
    assert!(json["domains"][9]["message"]
        .as_str()
        .unwrap()
        .contains("SERVFAIL"));

    let out = run(smtp_plan(&root()).args([
        "mx",
        "--resolver",
        &resolver,
        "multi.test",
        "implicit-a.test",
    ]));
    assert_eq!(out.status.code(), Some(0), "every domain has a mail route");
}

#[test]
fn domain_targets_follow_the_mail_route() {
    let dns = TestDns::start(CASES);
    // mx1.multi.test (127.0.0.11) is down: primary falls back to mx2.
    let (port, _servers) = servers_on(&[
        "127.0.0.12",
        "127.0.0.13",
        "127.0.0.21",
        "127.0.0.22",
        "127.0.0.23",
        "127.0.0.31",
        "127.0.0.41",
        "127.0.0.52",
    ]);
    let plan = format!(
        r#"version: 1
name: mx
settings:
  helo: client.test
  port: {port}
  timeouts: {{ connect: 2s, reply: 2s, session: 20s }}
  resolver: {{ nameservers: ["{dns}"], timeout: 2s, attempts: 1 }}
tests:
  - name: primary falls back
    targets: [{{ domain: multi.test }}]
    steps:
      - ehlo: ${{target.host}} ${{target.domain}} ${{target.address}}
  - name: all
    targets: [{{ domain: multi.test, mx: all }}]
    steps:
      - ehlo: x
  - name: equal preference
    targets: [{{ domain: equal.test }}]
    steps:
      - ehlo: x
  - name: implicit
    targets: [{{ domain: implicit-a.test }}]
    steps:
      - ehlo: x
  - name: cname
    targets: [{{ domain: cname.test }}]
    steps:
      - ehlo: ${{target.address}}
  - name: second address
    targets: [{{ domain: refuse-first.test }}]
    steps:
      - ehlo: x
  - name: null mx
    targets: [{{ domain: nullmx.test }}, {{ domain: nullmx.test, expect_mx: null, name: expected }}]
    steps:
      - ehlo: x
  - name: no route
    targets: [{{ domain: nothing.test }}, {{ domain: nomail.test }}, {{ domain: nothing.test, expect_mx: none, name: expected }}]
    steps:
      - ehlo: x
  - name: servfail
    targets: [{{ domain: servfail.test, expect_mx: none }}]
    steps:
      - ehlo: x
  - name: no address
    targets: [{{ domain: noaddr.test }}]
    steps:
      - ehlo: x
  - name: expected null but has mx
    targets: [{{ domain: multi.test, expect_mx: null }}]
    steps:
      - ehlo: x
"#,
        dns = dns.addr
    );
    let PlanRun { code, stdout, xml } = run_plan("mx-run", &plan, &[], &["--concurrency", "1"]);
    let stdout = normalise(&stdout).replace(&port.to_string(), "PORT");
    assert_eq!(code, Some(1), "{stdout}");
    assert_golden(&root().join("tests/golden/mx-run.console"), &stdout);
    assert!(
        xml.contains("C: EHLO mx2.multi.test multi.test 127.0.0.12"),
        "{xml}"
    );
    assert!(xml.contains("C: EHLO 127.0.0.41"), "{xml}");
    assert!(
        xml.contains("127.0.0.51:") && xml.contains("connected to 127.0.0.52:"),
        "{xml}"
    );
}

#[test]
fn a_silent_name_server_is_a_dns_error_naming_the_query() {
    let dns = TestDns::silent();
    let plan = format!(
        "version: 1\nname: silent\nsettings:\n  resolver: {{ nameservers: [\"{}\"], timeout: 300ms, attempts: 1 }}\ntargets: [{{ domain: multi.test }}]\ntests:\n  - name: t\n    steps:\n      - ehlo: x\n",
        dns.addr
    );
    let PlanRun { code, stdout, .. } = run_plan("mx-silent", &plan, &[], &[]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("ERROR t @ multi.test:25 (multi.test)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "dns: query MX multi.test. @ {}: no answer (timed out)",
            dns.addr
        )),
        "{stdout}"
    );
}

#[test]
fn connect_to_overrides_dns_and_keeps_the_name() {
    let dns = TestDns::start(CASES);
    let (port, _servers) = servers_on(&["127.0.0.1"]);
    let plan = format!(
        "version: 1\nname: redirect\nsettings:\n  resolver: {{ nameservers: [\"{}\"], attempts: 1 }}\ntargets: [{{ domain: nothing.test }}, {{ host: mx1.multi.test }}]\ntests:\n  - name: t\n    steps:\n      - ehlo: ${{target.host}}\n",
        dns.addr
    );
    let PlanRun { code, stdout, xml } = run_plan(
        "connect-to",
        &plan,
        &[],
        &[
            "--concurrency",
            "1",
            "--connect-to",
            &format!("nothing.test=127.0.0.1:{port}"),
            "--connect-to",
            &format!("MX1.multi.test=127.0.0.1:{port}"),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("PASS  t @ nothing.test:25 (nothing.test)"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS  t @ mx1.multi.test:25"), "{stdout}");
    assert!(
        xml.contains("C: EHLO nothing.test") && xml.contains("C: EHLO mx1.multi.test"),
        "{xml}"
    );
}

#[test]
fn one_resolver_cache_serves_the_whole_run() {
    let mut records = String::from("shared.test A 127.0.0.61\n");
    let mut list = String::new();
    for i in 0..40 {
        records.push_str(&format!("d{i}.test MX 10 shared.test\n"));
        list.push_str(&format!("d{i}.test\n"));
    }
    let dns = TestDns::start(&records);
    let (port, _servers) = servers_on(&["127.0.0.61"]);
    let plan = format!(
        "version: 1\nname: cache\nsettings:\n  port: {port}\n  per_host: 8\n  resolver: {{ nameservers: [\"{}\"], attempts: 1 }}\ntargets: [{{ file: domains.txt }}]\ntests:\n  - name: t\n    steps:\n      - ehlo: x\n",
        dns.addr
    );
    let PlanRun { code, stdout, .. } = run_plan("cache", &plan, &[("domains.txt", &list)], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("40 passed"), "{stdout}");
    // 40 MX queries, and the shared host's A and AAAA asked about a few times (the
    // 8 sessions that may start before the first answer is cached), not 40 times.
    let asked = dns.queries();
    assert!(
        asked < 60,
        "{asked} queries for 40 domains sharing one MX host (120 without a cache)"
    );
}

/// The same answers from a real authoritative server (NSD), when installed; under
/// `SMTP_PLAN_INTEROP=require` it must be.
#[test]
fn mx_command_agrees_with_a_real_dns_server() {
    let Some(nsd) = crate::nsd::Nsd::start(CASES) else {
        return;
    };
    let test_dns = TestDns::start(CASES);
    let domains = [
        "multi.test",
        "equal.test",
        "implicit-a.test",
        "implicit-aaaa.test",
        "implicit-both.test",
        "cname.test",
        "nullmx.test",
        "noaddr.test",
        "nomail.test",
        "nothing.test",
        "servfail.test",
    ];
    let answer = |server: SocketAddr| {
        let out = run(smtp_plan(&root())
            .args(["mx", "--json", "--resolver", &server.to_string()])
            .args(domains));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        json["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let hosts: Vec<String> = d["hosts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| format!("{} {} {}", h["preference"], h["host"], h["addresses"]))
                    .collect();
                format!("{} {} {}", d["domain"], d["status"], hosts.join(","))
            })
            .collect::<Vec<_>>()
    };
    let from_nsd = answer(nsd.addr);
    assert_eq!(from_nsd, answer(test_dns.addr));
    assert!(
        from_nsd[0].contains("10 \"mx1.multi.test\" [\"127.0.0.11\"],20 \"mx2.multi.test\""),
        "{from_nsd:?}"
    );
    assert!(from_nsd[10].contains("\"error\""), "{from_nsd:?}");
}
