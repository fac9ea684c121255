//! The report's answer: for each criterion a user weighs when choosing a broker for
//! the pipeline, the best of the brokers measured, chosen from the numbers alone, and
//! why. A criterion the run gave no numbers for says so instead of guessing.
//!
//! The embedded broker is measured beside the others but never recommended: it
//! serves the processes of one `superhero` command only, so it answers none of the
//! questions a deployment asks.

use serde::Serialize;

use super::{BrokerReport, Report};

/// The best broker for one criterion, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    pub criterion: &'static str,
    /// The broker, as the report names it; none when no broker measured qualifies.
    pub broker: Option<String>,
    /// The numbers behind the choice, or why there is none.
    pub why: String,
}

/// Brokers that could be recommended: reached, with numbers, and not in process.
fn candidates(report: &Report) -> impl Iterator<Item = &BrokerReport> {
    report
        .brokers
        .iter()
        .filter(|b| b.status != "skipped" && !b.in_process)
}

/// The recommendations, one per criterion, in a fixed order.
pub fn recommend(report: &Report) -> Vec<Recommendation> {
    vec![
        exactly_once(report),
        headroom(report),
        latency_at_load(report),
        faults(report),
        weight(report),
    ]
}

/// The item with the largest value (ties: the first measured), ignoring NaN.
fn best<T>(items: impl Iterator<Item = (T, f64)>) -> Option<(T, f64)> {
    items
        .filter(|(_, v)| v.is_finite())
        .fold(None, |best, (item, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((item, v)),
        })
}

/// Exactly-once tables with several workers: every game written once, none missing,
/// the fastest such pipeline.
fn exactly_once(report: &Report) -> Recommendation {
    const CRITERION: &str = "exactly-once tables with several workers";
    let Some(workload) = &report.workloads.game else {
        return not_measured(CRITERION, "the game workload did not run");
    };
    let clean = candidates(report).filter_map(|b| {
        let g = b.game.as_ref()?;
        (g.games_simulated > 0 && g.duplicate_games == 0 && g.missing_games == 0)
            .then_some((b, g.games_per_s))
    });
    match best(clean) {
        Some((b, games_per_s)) => {
            let g = b.game.as_ref().map_or(0, |g| g.games_simulated);
            Recommendation {
                criterion: CRITERION,
                broker: Some(b.broker.clone()),
                why: format!(
                    "each of {g} games written once by {} workers, none missing, at \
                     {games_per_s:.0} games/s, the fastest of the brokers that did so",
                    workload.workers
                ),
            }
        }
        None => Recommendation {
            criterion: CRITERION,
            broker: None,
            why: "no broker measured wrote every game exactly once".into(),
        },
    }
}

/// Headroom: the highest sustainable rate (else the throughput run's consumed/s) of
/// a broker that lost nothing, and how many times the game pipeline's event rate
/// on it that is.
fn headroom(report: &Report) -> Recommendation {
    const CRITERION: &str = "throughput headroom over the game pipeline";
    let rated = candidates(report).filter_map(|b| {
        let lost = b.raw.as_ref().map_or(0, |r| r.lost);
        let (rate, _) = b.rate_alone()?;
        (lost == 0).then_some((b, rate))
    });
    let Some((b, rate)) = best(rated) else {
        return not_measured(
            CRITERION,
            "no broker has a sustainable rate or a lossless throughput run",
        );
    };
    let what = if b.rate_alone().is_some_and(|(_, sustained)| sustained) {
        "sustains"
    } else {
        "consumed (throughput run)"
    };
    let over = match b.game.as_ref().filter(|g| g.events_per_s > 0.0) {
        Some(g) => format!(
            ", {:.0}× the {:.0} events/s of the game pipeline on it",
            rate / g.events_per_s,
            g.events_per_s
        ),
        None => String::new(),
    };
    Recommendation {
        criterion: CRITERION,
        broker: Some(b.broker.clone()),
        why: format!("{what} {rate:.0} msg/s without losing a message{over}"),
    }
}

/// Latency at load: the lowest p99 in each broker's heaviest fixed-rate run that
/// kept up and lost nothing, a run at half its sustainable rate or more.
fn latency_at_load(report: &Report) -> Recommendation {
    const CRITERION: &str = "latency at load";
    const LOADED: f64 = 0.5;
    let runs = candidates(report).filter_map(|b| {
        let run = b
            .latency
            .iter()
            .filter(|r| r.fraction.is_some_and(|f| f >= LOADED))
            .filter(|r| r.result.lost == 0 && r.result.publish_per_s >= 0.95 * r.rate)
            .max_by(|x, y| x.rate.total_cmp(&y.rate))?;
        Some(((b, run), -run.result.latency.p99_ms))
    });
    match best(runs) {
        Some(((b, run), _)) => Recommendation {
            criterion: CRITERION,
            broker: Some(b.broker.clone()),
            why: format!(
                "p99 {:.2} ms (p99.99 {:.2} ms) at {:.0} msg/s, {:.0}% of its sustainable \
                 rate, counted from the intended send time",
                run.result.latency.p99_ms,
                run.result.latency.p99_99_ms,
                run.rate,
                run.fraction.unwrap_or(0.0) * 100.0
            ),
        },
        None if report.workloads.latency.is_none() => {
            not_measured(CRITERION, "the latency workload did not run")
        }
        None => Recommendation {
            criterion: CRITERION,
            broker: None,
            why: "no fixed-rate run at half a sustainable rate or more kept up without loss".into(),
        },
    }
}

/// Behaviour under faults: every fault made (a broker that could not be restarted
/// when restarts were asked for is out), nothing lost, messages flowing again after
/// each; then the fewest duplicates, then the quickest back.
fn faults(report: &Report) -> Recommendation {
    const CRITERION: &str = "behaviour under faults";
    let runs = candidates(report).filter_map(|b| {
        let r = b.faults.as_ref()?;
        let mut slowest: Option<f64> = None;
        for f in &r.faults {
            slowest = Some(slowest.unwrap_or(0.0).max(f.resumed_after_s?));
        }
        (r.lost == 0 && r.published > 0 && r.not_done.is_empty()).then_some((b, r, slowest?))
    });
    // Fewest duplicates first, then the quickest.
    let chosen = runs.min_by(|x, y| {
        x.1.duplicates
            .cmp(&y.1.duplicates)
            .then(x.2.total_cmp(&y.2))
    });
    match chosen {
        Some((b, r, resumed)) => Recommendation {
            criterion: CRITERION,
            broker: Some(b.broker.clone()),
            why: format!(
                "lost none of {} messages when {}, delivered {} twice, and had messages \
                 flowing again within {resumed:.2} s of each",
                r.published,
                if r.faults.len() > 1 {
                    "its consumer was killed and its server restarted"
                } else {
                    "its consumer was killed"
                },
                r.duplicates
            ),
        },
        None if report.workloads.faults.is_none() => {
            not_measured(CRITERION, "the faults workload did not run")
        }
        None => Recommendation {
            criterion: CRITERION,
            broker: None,
            why: "every broker measured lost messages under a fault, had none flowing \
                  after one, or could not be restarted as asked"
                .into(),
        },
    }
}

/// Operational weight: the broker process with the smallest peak memory, with its
/// CPU per 100,000 messages a second in the throughput run.
fn weight(report: &Report) -> Recommendation {
    const CRITERION: &str = "operational weight";
    let measured = candidates(report).filter_map(|b| {
        let r = b.raw.as_ref()?;
        let usage = r.broker_process.as_ref()?;
        Some(((b, r, usage), -usage.rss_mib_max))
    });
    match best(measured) {
        Some(((b, r, usage), _)) => {
            let per_10k = if r.consume_per_s > 0.0 {
                format!(
                    ", {:.2} cores per 100,000 msg/s consumed",
                    usage.cpu_cores / (r.consume_per_s / 100_000.0)
                )
            } else {
                String::new()
            };
            Recommendation {
                criterion: CRITERION,
                broker: Some(b.broker.clone()),
                why: format!(
                    "its server peaked at {:.0} MiB resident in the throughput run, the \
                     least of the brokers running on this machine{per_10k}",
                    usage.rss_mib_max
                ),
            }
        }
        None => not_measured(
            CRITERION,
            "no broker process was found on this machine to measure",
        ),
    }
}

fn not_measured(criterion: &'static str, why: &str) -> Recommendation {
    Recommendation {
        criterion,
        broker: None,
        why: format!("not measured: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_is_the_first_of_the_largest() {
        let items = [("a", 1.0), ("b", 3.0), ("c", 3.0), ("d", f64::NAN)];
        assert_eq!(best(items.into_iter()), Some(("b", 3.0)));
        assert_eq!(best(std::iter::empty::<((), f64)>()), None);
    }
}
