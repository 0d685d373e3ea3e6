//! Running jobs: starts the responders the plans name, expands plans into jobs,
//! runs sessions concurrently under the global and per-host limits with retries,
//! and collects the results in plan order. Owns time, concurrency and cancellation.

pub mod job;
pub mod session;

use crate::dns::Dns;
use crate::plan::model::{Plan, TargetKind};
use crate::responder::{Persona, Responder};
use crate::result::{CaseResult, ErrorKind, Outcome, RunResult, SuiteResult, Transcript};
use job::{expand, ConnectTo, Context, Job, Routes};
use regex::Regex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// Default sessions open at once (spec section 4).
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Default sessions open at once to one host.
pub const DEFAULT_PER_HOST: usize = 2;

/// Run options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// `--concurrency`, overriding the plans' setting.
    pub concurrency: Option<usize>,
    /// `--filter`: only cases whose name (`TEST @ TARGET`) matches.
    pub filter: Option<Regex>,
    /// `--resolver`: the name server to ask instead of the plans' or the system's.
    pub resolver: Option<SocketAddr>,
    /// `--connect-to` rules.
    pub connect_to: Vec<ConnectTo>,
}

/// Domains looked up at once while expanding (and by `smtp-plan mx`).
pub const PARALLEL_LOOKUPS: usize = 256;

/// Runs the plans; `on_case` sees every case as it finishes. When `cancel`
/// turns true, no new session starts, sessions in flight send QUIT and stop, and
/// every unfinished case is reported as skipped.
pub async fn run(
    plans: Vec<Plan>,
    config: &RunConfig,
    cancel: tokio::sync::watch::Receiver<bool>,
    on_case: &mut dyn FnMut(&CaseResult),
) -> RunResult {
    let started = Instant::now();
    let plans: Vec<Arc<Plan>> = plans.into_iter().map(Arc::new).collect();
    let responders = start_responders(&plans).await;
    // One resolver, with its cache, for the whole run; the first plan that sets
    // `resolver` decides its settings.
    let resolver_settings = plans
        .iter()
        .map(|p| &p.settings.resolver)
        .find(|r| !r.nameservers.is_empty() || r.timeout.is_some() || r.attempts.is_some())
        .cloned()
        .unwrap_or_default();
    let context = Arc::new(Context {
        dns: Dns::new(&resolver_settings, config.resolver),
        connect_to: config.connect_to.clone(),
        run_id: Arc::from(run_id().as_str()),
        cancel,
    });
    // Interrupting while domains resolve skips every case.
    let domains = job::domains(&plans, &context);
    let routes = tokio::select! {
        r = resolve_domains(&domains, &context) => r,
        () = context.cancelled() => Routes::new(),
    };
    let addr_of = |p: &str| match responders.get(p) {
        Some(Ok(r)) => Ok(r.local_addr()),
        Some(Err(e)) => Err(e.clone()),
        None => Err("not started".to_string()),
    };
    let keep = |name: &str| config.filter.as_ref().is_none_or(|f| f.is_match(name));
    let expansion = expand(&plans, &routes, &addr_of, &keep, &context, &hostname());

    let concurrency = config
        .concurrency
        .or_else(|| {
            plans
                .iter()
                .filter_map(|p| p.settings.concurrency)
                .map(|c| c as usize)
                .max()
        })
        .unwrap_or(DEFAULT_CONCURRENCY)
        .max(1);
    let per_host = plans
        .iter()
        .filter_map(|p| p.settings.per_host)
        .map(|c| c as usize)
        .max()
        .unwrap_or(DEFAULT_PER_HOST)
        .max(1);
    let global = Arc::new(Semaphore::new(concurrency));
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, CaseResult)>();
    let total = expansion.jobs.len();
    // Jobs start in plan order: the global permit is taken before a job's task
    // exists, so a run never holds more than `concurrency` sessions (or tasks).
    let jobs = expansion.jobs.clone();
    let producer = tokio::spawn(async move {
        let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let key = job.fixed_addr.map_or_else(
                || job.hosts.join(",").to_ascii_lowercase(),
                |a| a.to_string(),
            );
            let host = hosts
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(per_host)))
                .clone();
            let permit = tokio::select! {
                p = global.clone().acquire_owned() => p,
                () = job.context.cancelled() => break,
            };
            let Ok(permit) = permit else {
                break;
            };
            let tx = tx.clone();
            tasks.spawn(async move {
                let result = run_job(&job, &host).await;
                let _ = tx.send((job.index, result));
                // Released after the result is out, so that at concurrency 1 the
                // console shows cases in plan order.
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let mut results: Vec<Option<CaseResult>> = vec![None; total];
    while let Some((i, case)) = rx.recv().await {
        on_case(&case);
        results[i] = Some(case);
    }
    let _ = producer.await;
    for r in responders.into_values().flatten() {
        r.shutdown().await;
    }

    let mut suites: Vec<SuiteResult> = expansion
        .suites
        .iter()
        .map(|s| SuiteResult {
            name: s.name.clone(),
            cases: Vec::new(),
        })
        .collect();
    for (job, result) in expansion.jobs.iter().zip(results) {
        let case = result.unwrap_or_else(|| CaseResult {
            name: job.name.clone(),
            classname: job.classname.clone(),
            duration: Duration::ZERO,
            outcome: Outcome::Skipped {
                message: "not run: the run was interrupted".into(),
            },
            transcript: Transcript::default(),
            facts: Vec::new(),
        });
        suites[job.suite].cases.push(case);
    }
    let interrupted = *context.cancel.borrow();
    let mut names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    names.dedup();
    RunResult {
        name: names.join(" + "),
        suites,
        duration: started.elapsed(),
        interrupted,
    }
}

/// One job under the limits, with retries for transient trouble: a 4xx reply or a
/// network error (spec section 4, `retries`).
async fn run_job(job: &Job, host: &Semaphore) -> CaseResult {
    if let Some(outcome) = &job.preset {
        return CaseResult {
            name: job.name.clone(),
            classname: job.classname.clone(),
            duration: Duration::ZERO,
            outcome: outcome.clone(),
            transcript: Transcript::default(),
            facts: Vec::new(),
        };
    }
    let mut delay = job.settings.retry_delay;
    let mut attempt = 0;
    loop {
        let result = {
            let Ok(_permit) = host.acquire().await else {
                unreachable!("the per-host semaphores are never closed")
            };
            session::run(job).await
        };
        if attempt >= job.settings.retries || !result.1 {
            return result.0;
        }
        attempt += 1;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = job.context.cancelled() => return result.0,
        }
        delay = delay.saturating_mul(2);
    }
}

/// Looks up the mail route of every domain, `PARALLEL_LOOKUPS` at a time.
pub async fn resolve_domains(domains: &[String], context: &Arc<Context>) -> Routes {
    let mut routes = Routes::new();
    if let Err(e) = &context.dns {
        for d in domains {
            routes.insert(
                d.to_ascii_lowercase(),
                Err(crate::dns::DnsFailure(e.clone())),
            );
        }
        return routes;
    }
    let limit = Arc::new(Semaphore::new(PARALLEL_LOOKUPS));
    let mut lookups = tokio::task::JoinSet::new();
    for d in domains {
        let (d, context, limit) = (d.clone(), context.clone(), limit.clone());
        lookups.spawn(async move {
            let _permit = limit.acquire().await;
            let route = match &context.dns {
                Ok(dns) => dns.mail_route(&d).await,
                Err(e) => Err(crate::dns::DnsFailure(e.clone())),
            };
            (d.to_ascii_lowercase(), route)
        });
    }
    while let Some(done) = lookups.join_next().await {
        if let Ok((d, route)) = done {
            routes.insert(d, route);
        }
    }
    routes
}

async fn start_responders(plans: &[Arc<Plan>]) -> HashMap<String, Result<Responder, String>> {
    let mut out = HashMap::new();
    for plan in plans {
        for t in &plan.targets {
            if let TargetKind::Responder(p) = &t.kind {
                if out.contains_key(p) {
                    continue;
                }
                let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
                let started = match Persona::load(p) {
                    Ok(persona) => Responder::start(Arc::new(persona), listen)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                out.insert(p.clone(), started);
            }
        }
    }
    out
}

/// A run id unique enough to tell runs apart in addresses and message ids.
fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:x}{:05x}",
        now.as_secs(),
        (now.subsec_micros() ^ std::process::id()) & 0xfffff
    )
}

/// This machine's name, the default `helo` (Linux: the kernel's hostname).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether an outcome may go away on a second attempt.
pub fn transient(outcome: &Outcome, last_code: Option<u16>) -> bool {
    match outcome {
        Outcome::Errored { kind, .. } => *kind != ErrorKind::Tls,
        Outcome::Failed { .. } => last_code.is_some_and(|c| (400..500).contains(&c)),
        _ => false,
    }
}
