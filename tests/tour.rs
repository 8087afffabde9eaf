//! `scalelab tour --quick` on real labs: every step runs, prints its lesson with the numbers it
//! measured, keeps its outputs, and tour.html shows every step's chart in Chromium; the node
//! killed under load costs no request; the autoscaler scales up and back down; nothing is left
//! running, after the end or after Ctrl-C.

mod common;

use std::time::Duration;

use common::browser::{chromium, require_chromium, screenshot};
use common::*;

/// The quick tour takes about 70 s on an idle 2-core machine; this bounds a busy one.
const TOUR_DEADLINE: Duration = Duration::from_secs(300);

/// The number after `prefix` in `text`, e.g. `number_after("450 requests, 0 error(s)", "requests, ")`.
fn number_after(text: &str, prefix: &str) -> f64 {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}")) + prefix.len();
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after `{prefix}` in:\n{text}"))
}

/// The processes of step `n`'s lab (a node and the balancer at least), once it has started.
fn lab_of_step(tour: &Proc, n: usize) -> Vec<i32> {
    tour.wait_output(&format!("step {n} of 7"), TOUR_DEADLINE);
    wait_for(&format!("step {n}'s lab"), Duration::from_secs(30), || {
        let pids = descendants_of(tour.pid());
        (pids.len() >= 3).then_some(pids)
    })
}

#[test]
fn the_quick_tour_runs_every_step_explains_it_and_draws_tour_html() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tour");
    let mut tour = Proc::spawn_capturing(&["tour", "--quick", "--out", out.to_str().unwrap()]);
    // The last step's lab, to check it is gone once the tour ends.
    let last_lab = lab_of_step(&tour, 7);
    let status = tour.wait_exit(TOUR_DEADLINE).expect("the tour ends by itself");
    // The lessons are wrapped for the terminal: read them as one line.
    let text = tour.output().split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(status.code(), Some(0), "{text}");
    wait_for("the tour's processes to be gone", Duration::from_secs(10), || {
        last_lab.iter().all(|&pid| !alive(pid)).then_some(())
    });

    // Every step's header and lesson, with numbers.
    for n in 1..=7 {
        assert!(text.contains(&format!("step {n} of 7")), "step {n} missing:\n{text}");
    }
    assert!(number_after(&text, "/op1 alone: p50 ") > 0.0);
    assert!(text.contains("With /op2 running on the one worker: p50"), "{text}");
    assert!(text.contains("Throughput: 1 worker(s): ") && text.contains("3 worker(s): "), "{text}");
    assert!(text.contains("Throughput: 1 node(s): ") && text.contains("3 node(s): "), "{text}");
    assert!(text.contains("at ρ = 0.30") && text.contains("predicted"), "{text}");
    assert!(
        text.contains("round_robin: the slow node answered") && text.contains("peak_ewma: the slow node"),
        "{text}"
    );
    assert!(text.contains("the tour took "), "{text}");

    // Step 1: /op1 waits behind /op2 on one worker: its median is at least several times what it
    // was alone (50 ms of CPU ahead of it against none).
    let alone = number_after(&text, "/op1 alone: p50 ");
    let behind = number_after(&text, "With /op2 running on the one worker: p50 ");
    assert!(behind > 3.0 * alone, "/op1's p50 alone {alone} ms, behind /op2 {behind} ms");

    // Step 6: the node killed under load costs no request, and comes back.
    let served = number_after(&text, "killed with SIGKILL: no drain, no goodbye. ");
    assert!(served > 100.0, "{text}");
    assert!(text.contains(&format!("{served} requests, 0 error(s)")), "a request failed:\n{text}");
    assert!(text.contains("the lab had a new node-2 running"), "node-2 did not come back:\n{text}");

    // Step 7: the autoscaler scaled up under the step and back down after it.
    let decided = number_after(&text, "The autoscaler decided ");
    assert!(decided >= 2.0, "{text}");
    assert!(text.contains("1 → 2 at "), "no scale-up from 1:\n{text}");
    assert!(text.contains(" → 1 at "), "no scale-down to 1:\n{text}");
    assert!(text.contains("node: replicas 1 -> 2 (cpu "), "the decision as up prints it:\n{text}");

    // Each step's outputs: the topology it ran, and its sweep's results or its run's timeline.
    for (step, points) in [("2-vertical", 3), ("3-horizontal", 3), ("4-knee", 3), ("5-slow-node", 2)] {
        let d = out.join(step);
        assert!(d.join("topology.yaml").exists() && d.join("report.html").exists(), "{step}");
        let r = read_results(&d);
        assert_eq!(r.series[0].points.len(), points, "{step}");
        assert!(r.series[0].points.iter().all(|p| p.rps > 0.0), "{step}: a point served nothing");
    }
    assert!(read_results(&out.join("4-knee")).series[0].knee.is_some(), "the knee series has its knee");
    for step in ["6-failover", "7-autoscale"] {
        for file in ["topology.yaml", "timeline.json", "timeline.html"] {
            assert!(out.join(step).join(file).exists(), "{step}/{file}");
        }
    }
    assert!(out.join("1-blocking/topology.yaml").exists());

    // tour.html in Chromium: seven sections, each with its lesson and at least one drawn chart.
    let url = format!("file://{}", out.join("tour.html").display());
    let dom = chromium(dir.path(), "dom", &["--dump-dom", &url]);
    for n in 1..=7 {
        let start = dom.find(&format!("id=\"step-{n}\"")).unwrap_or_else(|| panic!("no #step-{n}"));
        let end = dom[start..].find("</section>").map_or(dom.len(), |e| start + e);
        let section = &dom[start..end];
        assert!(section.contains("<svg"), "step {n} has no chart");
        assert!(section.matches("<p>").count() >= 2, "step {n} has no lesson");
    }
    assert!(!dom.contains("(not run)"), "every step ran");
    screenshot(dir.path(), &url, "tour.png", 1100, 2400);
}

#[test]
fn an_interrupted_tour_keeps_its_steps_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tour");
    let mut tour = Proc::spawn_capturing(&["tour", "--quick", "--out", out.to_str().unwrap()]);
    let lab = lab_of_step(&tour, 2);
    tour.signal(libc::SIGINT);
    let status = tour.wait_exit(Duration::from_secs(30)).expect("the tour stops on Ctrl-C");
    let text = tour.output();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("stopped at step 2 (interrupted)"), "{text}");
    wait_for("the lab's processes to be gone", Duration::from_secs(10), || {
        lab.iter().all(|&pid| !alive(pid)).then_some(())
    });
    let page =
        std::fs::read_to_string(out.join("tour.html")).expect("tour.html is written for the steps done");
    assert!(page.contains("id=\"step-1\"") && !page.contains("id=\"step-2\""), "step 1 kept, step 2 not");
    assert_eq!(page.matches("(not run)").count(), 6, "six steps not run");
}
