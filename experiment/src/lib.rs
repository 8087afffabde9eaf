//! The experiment behind `scalelab sweep`, `scalelab fit` and `scalelab report`: measure a
//! series of topologies, fit the Universal Scalability Law to each series, and draw the result.
//!
//! # Layout
//! - [`results`]: `results.json`, the serde types a sweep writes and a report reads.
//! - [`usl`]: the Universal Scalability Law fit, by non-linear least squares.
//! - [`fit`]: `scalelab fit FILE.csv`: read measured (N, X) pairs, fit, print.
//! - [`queueing`]: what latency queueing theory predicts at a load (pooled M/D/c against
//!   partitioned c × M/D/1), and where its knee is.
//! - [`report`]: `report.html`, one self-contained page of charts and tables
//!   (`scalelab report DIR`).
//! - [`sweep`]: `scalelab sweep`: drive a lab through the series and measure each point.
//! - [`compare`]: `scalelab compare A B`: two sweeps side by side, judged against their noise.
//! - [`timeline`]: `scalelab load --timeline DIR`: a run second by second, with what the
//!   balancer's admin listener said, as JSON, CSV and a page drawn like the report.
//! - [`tour`]: `scalelab tour`: the whole lesson in seven measured steps, and `tour.html`.

pub mod compare;
pub mod fit;
pub mod queueing;
pub mod report;
pub mod results;
pub mod sweep;
pub mod timeline;
pub mod tour;
pub mod usl;
