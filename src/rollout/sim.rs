//! Deterministic simulation of the rollout engine: a virtual clock, an in-memory cluster
//! (workloads that become ready a tick after they are scaled, a router, an analysis sampler with
//! scripted verdicts, a forge) and a controller loop that writes the status before it acts. A
//! crash can be injected before and after every status write and every action; the run then
//! goes on from the persisted status, as a restarted agent would.

use super::replicas;
use super::*;
use crate::analysis::{Outcome, Verdict};
use crate::crd::*;
use jiff::Timestamp;
use std::collections::BTreeMap;

/// One virtual tick (one controller pass).
pub const TICK: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    Replicas,
    Mesh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripted {
    Pass,
    Marginal,
    Fail,
    Inconclusive,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deploy {
    pub hash: String,
    pub template: serde_json::Value,
    pub replicas: i32,
    pub ready: i32,
    /// When its current template was applied (for the progress deadline).
    pub since: i64,
}

/// Side effects, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub creates: BTreeMap<&'static str, u32>,
    pub deletes: BTreeMap<&'static str, u32>,
    pub template_changes: u32,
    pub promotions: u32,
    pub analyses_started: u32,
    pub rollbacks_opened: u32,
    pub weight_changes: u32,
}

/// The world: everything that survives a crash of the agent.
#[derive(Debug, Clone)]
pub struct World {
    pub routing: Routing,
    pub now: Timestamp,
    pub status: RolloutStatus,
    pub stable: Deploy,
    pub stable_available: bool,
    pub canary: Option<Deploy>,
    pub baseline: Option<Deploy>,
    /// Mesh weights as set, and as the router reports them (one tick later).
    pub weights_set: RouterObs,
    pub weights_live: RouterObs,
    pub analyses: BTreeMap<String, (Timestamp, Scripted)>,
    pub script: Vec<Scripted>,
    pub prs: BTreeMap<String, String>,
    pub request: Option<String>,
    pub counters: Counters,
    pub violations: Vec<String>,
    /// Persisted statuses' progress, in order.
    pub progress: Vec<Progress>,
    pub pause_starts: BTreeMap<(i64, i32), String>,
    pub events: usize,
    /// The agent crashed once already (one crash per run).
    pub crashed: bool,
    /// The canary's pods never become ready (bad image): its progress deadline passes.
    pub canary_broken: bool,
}

pub fn template(v: &str) -> (serde_json::Value, String) {
    (
        serde_json::json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": format!("web:{v}")}]}}),
        format!("hash-{v}"),
    )
}

pub fn handoff(v: &str) -> RolloutHandoff {
    let (t, h) = template(v);
    RolloutHandoff {
        template_hash: h,
        revision: format!("rev-{v}-0123456789abcdef"),
        provenance: vec!["apps/web/deployment.yaml".into()],
        template: t,
        replicas: Some(10),
    }
}

pub fn six_steps(routing: Routing) -> RolloutSpec {
    let yaml = r#"
targetRef: {kind: Deployment, name: web}
service: web
steps:
  - setWeight: 10
  - analysis: {template: golden, warmup: 1m, duration: 10m}
  - setWeight: 33
  - analysis: {template: golden, duration: 10m}
  - pause: {duration: 5m}
  - pause: {}
"#;
    let mut spec: RolloutSpec = serde_saphyr::from_str(yaml).expect("spec");
    if routing == Routing::Mesh {
        spec.traffic = TrafficSpec {
            replicas: None,
            istio: None,
            gateway_api: Some(GatewayApiTraffic {
                http_route: "web".into(),
            }),
        };
    }
    spec
}

fn verdict(s: Scripted) -> AnalysisResult {
    let (outcome, score) = match s {
        Scripted::Pass => (Outcome::Pass, 100.0),
        Scripted::Marginal => (Outcome::Marginal, 80.0),
        Scripted::Fail => (Outcome::Fail, 0.0),
        Scripted::Inconclusive => (Outcome::Inconclusive, 0.0),
        Scripted::Unavailable => {
            return AnalysisResult::Unavailable {
                reason: "prometheus unreachable".into(),
            };
        }
    };
    AnalysisResult::Verdict(Verdict {
        outcome,
        score,
        reason: format!("scripted {outcome}"),
        metrics: Vec::new(),
        groups: Vec::new(),
        context: BTreeMap::new(),
    })
}

impl World {
    pub fn new(routing: Routing, script: Vec<Scripted>) -> World {
        let (t1, h1) = template("v1");
        let status = RolloutStatus {
            handoff: Some(handoff("v2")),
            ..Default::default()
        };
        World {
            routing,
            now: Timestamp::from_second(1_800_000_000).expect("time"),
            status,
            stable: Deploy {
                hash: h1,
                template: t1,
                replicas: 10,
                ready: 10,
                since: 0,
            },
            stable_available: true,
            canary: None,
            baseline: None,
            weights_set: RouterObs::default(),
            weights_live: RouterObs::default(),
            analyses: BTreeMap::new(),
            script,
            prs: BTreeMap::new(),
            request: None,
            counters: Counters::default(),
            violations: Vec::new(),
            progress: Vec::new(),
            pause_starts: BTreeMap::new(),
            events: 0,
            crashed: false,
            canary_broken: false,
        }
    }

    /// Time passes: pods become ready, the router catches up, stable finishes rolling.
    fn tick(&mut self) {
        self.now += jiff::SignedDuration::from_secs(TICK);
        if let Some(d) = self.canary.as_mut() {
            d.ready = if self.canary_broken { 0 } else { d.replicas };
        }
        if let Some(d) = self.baseline.as_mut() {
            d.ready = d.replicas;
        }
        self.stable.ready = self.stable.replicas;
        self.stable_available = true;
        self.weights_live = self.weights_set;
    }

    fn observe(&self) -> Observations {
        // The Deployment controller's rule: no progress for `progressDeadlineSeconds` (10m here).
        let w = |d: &Option<Deploy>| {
            d.as_ref().map(|d| WorkloadObs {
                template_hash: Some(d.hash.clone()),
                replicas: d.replicas,
                ready_replicas: d.ready,
                progress_deadline_exceeded: d.ready < d.replicas
                    && self.now.as_second() >= d.since + 600,
            })
        };
        let router = match self.routing {
            Routing::Replicas => replicas::achieved(
                self.stable.ready,
                self.canary.as_ref().map_or(0, |d| d.ready),
                self.baseline.as_ref().map_or(0, |d| d.ready),
            ),
            Routing::Mesh => self.weights_live,
        };
        let analysis = self.status.analysis.as_ref().and_then(|run| {
            self.analyses.get(&run.run_id).map(|(end, s)| AnalysisObs {
                run_id: run.run_id.clone(),
                samples: u32::try_from(
                    (self.now.as_second() - (end.as_second() - 600)).max(0) / 30,
                )
                .unwrap_or(0),
                metrics: Vec::new(),
                result: (self.now >= *end).then(|| verdict(*s)),
            })
        });
        let git_rollback = self.status.failed_revision.as_ref().and_then(|rev| {
            self.prs.get(rev).map(|url| GitRollbackObs {
                failed_revision: rev.clone(),
                pull_request: Some(url.clone()),
            })
        });
        Observations {
            namespace: "shop".into(),
            name: "web".into(),
            generation: Some(1),
            stable: StableObs {
                exists: true,
                template_hash: Some(self.stable.hash.clone()),
                template: Some(self.stable.template.clone()),
                replicas: self.stable.replicas,
                available: self.stable_available,
            },
            canary: w(&self.canary),
            baseline: w(&self.baseline),
            router: Some(router),
            analysis,
            metrics_backend: BackendHealth::Up,
            request: self.request.clone(),
            git_rollback,
            freeze: None,
        }
    }

    fn traffic_on(&self, track: Track) -> bool {
        match self.routing {
            Routing::Replicas => {
                let d = if track == Track::Canary {
                    &self.canary
                } else {
                    &self.baseline
                };
                d.as_ref().is_some_and(|d| d.ready > 0)
            }
            Routing::Mesh => {
                let w = if track == Track::Canary {
                    self.weights_live.canary
                } else {
                    self.weights_live.baseline
                };
                w > 0
                    || (if track == Track::Canary {
                        self.weights_set.canary
                    } else {
                        self.weights_set.baseline
                    }) > 0
            }
        }
    }

    fn execute(&mut self, a: &Action) {
        let name = |t: Track| t.as_str();
        match a {
            Action::EnsureWorkload {
                track,
                template,
                template_hash,
                replicas,
                ..
            } => {
                let slot = match track {
                    Track::Canary => &mut self.canary,
                    Track::Baseline => &mut self.baseline,
                    Track::Stable => {
                        self.violations.push("EnsureWorkload on stable".into());
                        return;
                    }
                };
                if let Some(d) = slot.as_mut() {
                    if d.hash != *template_hash {
                        d.hash = template_hash.clone();
                        d.template = template.clone();
                        d.ready = 0;
                        d.since = self.now.as_second();
                        self.counters.template_changes += 1;
                    }
                    d.replicas = *replicas;
                } else {
                    *slot = Some(Deploy {
                        hash: template_hash.clone(),
                        template: template.clone(),
                        replicas: *replicas,
                        ready: 0,
                        since: self.now.as_second(),
                    });
                    *self.counters.creates.entry(name(*track)).or_default() += 1;
                }
            }
            Action::ScaleWorkload { track, replicas } => {
                let slot = match track {
                    Track::Canary => &mut self.canary,
                    Track::Baseline => &mut self.baseline,
                    Track::Stable => {
                        self.violations.push("stable scaled".into());
                        return;
                    }
                };
                if let Some(d) = slot {
                    d.replicas = *replicas;
                    d.ready = d.ready.min(*replicas);
                }
            }
            Action::DeleteWorkload { track } => {
                if self.traffic_on(*track) {
                    self.violations
                        .push(format!("{} deleted while it had traffic", name(*track)));
                }
                let slot = match track {
                    Track::Canary => &mut self.canary,
                    Track::Baseline => &mut self.baseline,
                    Track::Stable => {
                        self.violations.push("stable deleted".into());
                        return;
                    }
                };
                if slot.take().is_some() {
                    *self.counters.deletes.entry(name(*track)).or_default() += 1;
                }
            }
            Action::SetWeight { canary, baseline } => {
                if self.routing == Routing::Replicas {
                    self.violations
                        .push("SetWeight with the replicas router".into());
                }
                let new = RouterObs {
                    canary: *canary,
                    baseline: *baseline,
                };
                if new != self.weights_set {
                    self.counters.weight_changes += 1;
                    if (new.canary > 0 && self.canary.as_ref().is_none_or(|d| d.ready == 0))
                        || (new.baseline > 0 && self.baseline.as_ref().is_none_or(|d| d.ready == 0))
                    {
                        self.violations
                            .push(format!("weight {new:?} sent to a track without ready pods"));
                    }
                }
                self.weights_set = new;
            }
            Action::PromoteStable {
                template,
                template_hash,
                ..
            } => {
                if self.stable.hash != *template_hash {
                    self.stable.hash = template_hash.clone();
                    self.stable.template = template.clone();
                    self.stable_available = false;
                    self.counters.promotions += 1;
                }
            }
            Action::RunAnalysis(req) => {
                if !self.analyses.contains_key(&req.run_id) {
                    let s = if self.script.is_empty() {
                        Scripted::Pass
                    } else {
                        self.script.remove(0)
                    };
                    self.analyses.insert(req.run_id.clone(), (req.end, s));
                    self.counters.analyses_started += 1;
                }
            }
            Action::RequestGitRollback(f) => {
                if !matches!(
                    f.verdict.cause(),
                    FailureCause::AnalysisFailed(_)
                        | FailureCause::Aborted
                        | FailureCause::ProgressDeadlineExceeded
                ) {
                    self.violations.push("rollback without a failure".into());
                }
                if !self.prs.contains_key(&f.failed_revision) {
                    self.prs.insert(
                        f.failed_revision.clone(),
                        format!("https://forge/pr/{}", self.prs.len() + 1),
                    );
                    self.counters.rollbacks_opened += 1;
                }
            }
        }
    }

    fn persist(&mut self, st: RolloutStatus) {
        let p = progress(&st);
        if let Some(last) = self.progress.last()
            && p < *last
        {
            self.violations
                .push(format!("status went backwards: {last:?} -> {p:?}"));
        }
        self.progress.push(p);
        if st.phase == Phase::Paused
            && st.pause_reason == Some(PauseReason::PauseStep)
            && let (Some(i), Some(t)) = (st.current_step, &st.step_started_at)
        {
            let prev = self
                .pause_starts
                .entry((st.attempt, i))
                .or_insert_with(|| t.clone());
            if prev.as_str() != t.as_str() {
                self.violations
                    .push(format!("pause start of step {i} moved: {prev} -> {t}"));
            }
        }
        self.status = st;
    }

    /// `true` when this event is where the agent crashes.
    fn event(&mut self, crash: Option<(usize, bool)>, after: bool) -> bool {
        let hit = !self.crashed && crash == Some((self.events, after));
        self.crashed |= hit;
        if after {
            self.events += 1;
        }
        hit
    }

    /// One controller pass; stops at the crash point, if it is in this pass. Returns whether it
    /// did anything.
    pub fn pass(&mut self, spec: &RolloutSpec, crash: Option<(usize, bool)>) -> bool {
        let obs = self.observe();
        let d = step(spec, &self.status, &obs, self.now);
        let busy = d.status != self.status || !d.actions.is_empty();
        if d.status != self.status {
            if self.event(crash, false) {
                return busy;
            }
            self.persist(d.status);
            if self.event(crash, true) {
                return busy;
            }
        }
        for a in &d.actions {
            if self.event(crash, false) {
                return busy;
            }
            self.execute(a);
            if self.event(crash, true) {
                return busy;
            }
        }
        busy
    }
}

/// When a scripted event happens: the first time the persisted status satisfies it.
pub type Condition = fn(&RolloutStatus) -> bool;

/// A scripted operator and git: things that happen to the world when a condition first holds.
pub struct Script {
    pub triggers: Vec<(Condition, Trigger)>,
}

#[derive(Clone)]
pub enum Trigger {
    Request(&'static str),
    NewTemplate(&'static str),
}

/// Runs to quiescence (or `max_ticks`), crashing once at `crash`.
pub fn run(
    spec: &RolloutSpec,
    mut world: World,
    script: &Script,
    crash: Option<(usize, bool)>,
    max_ticks: usize,
) -> World {
    let mut fired = vec![false; script.triggers.len()];
    let mut quiet = 0;
    for _ in 0..max_ticks {
        for (k, (cond, t)) in script.triggers.iter().enumerate() {
            if !fired[k] && cond(&world.status) {
                fired[k] = true;
                match t {
                    Trigger::Request(r) => world.request = Some((*r).to_owned()),
                    Trigger::NewTemplate(v) => world.status.handoff = Some(handoff(v)),
                }
            }
        }
        let busy = world.pass(spec, crash);
        world.tick();
        let idle_phase = matches!(world.status.phase, Phase::Healthy | Phase::RollbackPending);
        quiet = if !busy && idle_phase { quiet + 1 } else { 0 };
        if quiet > 3 && fired.iter().all(|f| *f) {
            break;
        }
    }
    world
}
