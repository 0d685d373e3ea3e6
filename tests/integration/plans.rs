//! The plan layer through the library API: what a valid plan turns into, and that
//! loading never panics on random or mutated input.

use crate::support::root;
use proptest::prelude::*;
use smtp_plan::plan::error::Source;
use smtp_plan::plan::model::*;
use smtp_plan::plan::vars::{Piece, RunVar};
use smtp_plan::plan::{load_file, load_str, Options};
use std::path::Path;

fn env(name: &str) -> Option<String> {
    (name == "SMTP_PLAN_TEST_SET").then(|| "s3cret".to_string())
}

fn everything() -> Plan {
    let opts = Options {
        vars: &[],
        env: &env,
    };
    load_file(&root().join("tests/fixtures/valid/everything.yaml"), &opts).expect("valid")
}

#[test]
fn every_key_reaches_the_model() {
    let plan = everything();
    assert_eq!(plan.name, "every key");
    let s = &plan.settings;
    assert_eq!(s.concurrency, Some(64));
    assert_eq!(s.resolver.nameservers.len(), 3);
    assert_eq!(s.resolver.nameservers[0].to_string(), "127.0.0.1:53");
    assert_eq!(s.session.port, Some(2525));
    assert_eq!(
        s.session.data_timeout,
        Some(std::time::Duration::from_secs(180))
    );
    assert_eq!(s.session.proxy_protocol, Some(ProxyProtocol::V2));
    assert!(matches!(
        &plan.targets[2].kind,
        TargetKind::Domain {
            mx: MxMode::All,
            expect_mx: None,
            ..
        }
    ));
    assert!(matches!(
        &plan.targets[3].kind,
        TargetKind::Domain {
            expect_mx: Some(ExpectMx::Null),
            ..
        }
    ));
    assert!(matches!(
        &plan.targets[4].kind,
        TargetKind::Domain {
            expect_mx: Some(ExpectMx::None),
            ..
        }
    ));
    match &plan.targets[5].kind {
        TargetKind::List { entries, .. } => assert_eq!(entries.len(), 2),
        other => panic!("{other:?}"),
    }
    // Test targets: the tagged top-level target plus the test's own.
    let delivery = &plan.tests[0];
    assert_eq!(delivery.targets, vec![0, 7]);
    assert_eq!(plan.targets[7].settings.port, Some(2526));
    // Tests without `targets` run on every top-level target.
    assert_eq!(plan.tests[2].targets, (0..7).collect::<Vec<_>>());
}

#[test]
fn steps_carry_their_arguments_and_default_expectations() {
    let plan = everything();
    let steps = &plan.tests[0].steps;
    assert_eq!(steps.len(), 15);
    match &steps[3].action {
        Action::MailFrom { address, params } => {
            assert_eq!(address.static_text().as_deref(), Some("chris@contoso.com"));
            assert_eq!(params.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    match &steps[4].action {
        Action::RcptTo { notify, orcpt, .. } => {
            assert_eq!(
                notify,
                &Some(Notify::On(vec![
                    NotifyOn::Success,
                    NotifyOn::Failure,
                    NotifyOn::Delay
                ]))
            );
            assert_eq!(
                orcpt.as_ref().unwrap().to_string(),
                "rfc822;kate@fabrikam.com"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(steps[4].expect.matches(251, None, ""));
    match &steps[6].action {
        Action::Data(Message {
            content: Content::Parts { headers, body },
            size,
        }) => {
            assert_eq!(*size, Some(10_000));
            assert_eq!(headers[0].0, "Subject");
            assert_eq!(headers[0].1.to_string(), "Test from ${test.name} (5)");
            assert!(headers[1].1.run_vars().any(|v| *v == RunVar::TargetAddress));
            assert_eq!(
                body.to_string(),
                "Line one\n.line that needs dot-stuffing\n"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(steps[6].capture[0].name, "queue_id");
    assert!(
        matches!(&steps[7].action, Action::Vrfy(t) if t.pieces == vec![Piece::Run(RunVar::Capture("queue_id".into()))])
    );
    // Defaults: expn 2xx, rset 250, quit 221.
    assert!(steps[8].expect.matches(252, None, ""));
    assert!(steps[9].expect.matches(250, None, "") && !steps[9].expect.matches(251, None, ""));
    assert_eq!(steps[10].name.as_deref(), Some("still alive"));
    match &steps[11].action {
        Action::Pipeline(inner) => assert_eq!(
            inner.iter().map(|s| s.action.verb()).collect::<Vec<_>>(),
            ["mail_from", "rcpt_to", "data"]
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &steps[12].action,
        Action::Bdat {
            chunk_size: Some(1024),
            ..
        }
    ));
    assert!(
        matches!(&steps[13].action, Action::Send(t) if t.to_string() == "XCLIENT NAME=${literal}")
    );
}

#[test]
fn secrets_are_collected_for_masking() {
    let plan = everything();
    assert_eq!(
        plan.secrets,
        vec!["hunter2".to_string(), "s3cret".to_string(), "x".to_string()]
    );
}

#[test]
fn connect_outcomes_parse_only_for_connect() {
    let plan = everything();
    let last = &plan.tests[3].steps[0];
    assert_eq!(last.expect.to_string(), "one of [refused, closed, timeout]");
}

fn try_load(text: &str) {
    let opts = Options {
        vars: &[],
        env: &env,
    };
    let _ = load_str(
        Path::new("fuzz.yaml"),
        &Source::new("fuzz.yaml", text),
        &opts,
    );
}

const SEED: &str = include_str!("../fixtures/valid/everything.yaml");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn loading_random_text_never_panics(text in "\\PC{0,200}") {
        try_load(&text);
    }

    #[test]
    fn loading_yaml_like_text_never_panics(text in "([a-z_]{1,8}: ?(\\[|\\{|-|\\$\\{|[0-9x.]{1,5}|\"|'|\n {0,6}|#|&a|\\*a|!t|<<)?){0,30}") {
        try_load(&text);
    }

    #[test]
    fn loading_mutated_plans_never_panics(cuts in proptest::collection::vec((0usize..4000, 0usize..40, "\\PC{0,6}"), 1..6)) {
        let mut text = SEED.to_string();
        for (at, len, insert) in cuts {
            let mut start = at % (text.len() + 1);
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(start..end, &insert);
        }
        try_load(&text);
    }
}
