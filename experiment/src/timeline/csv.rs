//! `timeline.csv`: one row a second. The load generator's columns come first; with admin
//! data, a column per group (`replicas:GROUP`, and `metric:GROUP`, `desired:GROUP` for an
//! autoscaled one), two per node (`cpu:NODE`, `cpu_cap:NODE`), and `decisions` (the
//! autoscalers' changes in that second, `group from→to (reason)`). An empty cell is a gap:
//! no answer from the balancer in that second, or nothing to measure.

use std::fmt::Write;

use super::Timeline;

/// The whole file.
pub fn write(t: &Timeline) -> String {
    let (groups, nodes) = match &t.admin {
        Some(a) => (a.groups.clone(), a.nodes.clone()),
        None => (Vec::new(), Vec::new()),
    };
    let autoscaled: Vec<&String> = groups
        .iter()
        .filter(|g| t.seconds.iter().filter_map(|s| s.admin.as_ref()).any(|a| a.autoscale.contains_key(*g)))
        .collect();
    let mut header: Vec<String> = [
        "t_s",
        "offered",
        "sent",
        "served_2xx",
        "responses",
        "errors",
        "unavailable_503",
        "p50_ms",
        "p99_ms",
    ]
    .map(String::from)
    .into();
    header.extend(groups.iter().map(|g| format!("replicas:{g}")));
    for g in &autoscaled {
        header.push(format!("metric:{g}"));
        header.push(format!("desired:{g}"));
    }
    for n in &nodes {
        header.push(format!("cpu:{n}"));
        header.push(format!("cpu_cap:{n}"));
    }
    if t.admin.is_some() {
        header.push("decisions".into());
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}", header.iter().map(|h| quote(h)).collect::<Vec<_>>().join(","));
    let num = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v}"));
    // Cores to a ten-thousandth: the readings are not more precise than that.
    let cores = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v:.4}"));
    for s in &t.seconds {
        let l = &s.load;
        let mut row: Vec<String> = vec![
            l.t.to_string(),
            l.offered.to_string(),
            l.sent.to_string(),
            l.ok.to_string(),
            l.responses.to_string(),
            l.errors.to_string(),
            l.unavailable.to_string(),
            num(l.p50_ms),
            num(l.p99_ms),
        ];
        let a = s.admin.as_ref();
        row.extend(
            groups
                .iter()
                .map(|g| a.and_then(|a| a.replicas.get(g)).map_or_else(String::new, |r| r.to_string())),
        );
        for g in &autoscaled {
            let reading = a.and_then(|a| a.autoscale.get(*g));
            row.push(num(reading.and_then(|r| r.value)));
            row.push(reading.map_or_else(String::new, |r| r.desired.to_string()));
        }
        for n in &nodes {
            let cpu = a.and_then(|a| a.cpu.get(n));
            row.push(cores(cpu.and_then(|c| c.used)));
            row.push(cores(cpu.and_then(|c| c.cap)));
        }
        if let Some(admin) = &t.admin {
            let within = |d: &&super::TimedDecision| d.t >= f64::from(l.t) && d.t < f64::from(l.t) + 1.0;
            let text: Vec<String> = admin
                .decisions
                .iter()
                .filter(within)
                .map(|d| format!("{} {}→{} ({})", d.group, d.decision.from, d.decision.to, d.decision.reason))
                .collect();
            row.push(quote(&text.join("; ")));
        }
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

/// A CSV field: quoted (with inner quotes doubled) when it holds a comma, a quote or a line
/// break (RFC 4180).
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture;
    use super::*;

    #[test]
    fn one_row_a_second_with_admin_columns_and_decisions() {
        let csv = write(&fixture(10));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(
            lines[0],
            "t_s,offered,sent,served_2xx,responses,errors,unavailable_503,p50_ms,p99_ms,replicas:node,\
             metric:node,desired:node,cpu:node-1,cpu_cap:node-1,cpu:node-2,cpu_cap:node-2,cpu:node-3,\
             cpu_cap:node-3,decisions"
        );
        assert!(lines[1].starts_with("0,10,10,10,10,0,0,2,8,1,0.8,1,0.1500,0.5000,,,,,"), "{}", lines[1]);
        assert!(lines[5].ends_with(",\"node 1→2 (cpu over target, 1 → 2)\""), "{}", lines[5]);
        // Second 5 had no answer from the balancer: its admin cells are empty.
        assert!(lines[6].starts_with("5,60,60,60,60,0,0,7,18,,,,,,,,,,"), "{}", lines[6]);
        let cells = lines[10].split(',').count();
        assert_eq!(cells, 19, "{}", lines[10]);
    }

    #[test]
    fn without_admin_only_the_load_columns() {
        let mut t = fixture(3);
        t.admin = None;
        for s in &mut t.seconds {
            s.admin = None;
        }
        let csv = write(&t);
        assert!(
            csv.starts_with("t_s,offered,sent,served_2xx,responses,errors,unavailable_503,p50_ms,p99_ms\n")
        );
        assert_eq!(csv.lines().nth(1), Some("0,10,10,10,10,0,0,2,8"));
    }

    #[test]
    fn fields_with_commas_are_quoted() {
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("plain"), "plain");
    }
}
