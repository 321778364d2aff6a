//! The process's Prometheus recorder: installed once, with the catalog's buckets and help.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::catalog::{CATALOG, Kind};
use crate::{Error, Result};

/// How often recorded histogram samples are folded into their buckets between scrapes, so
/// they do not pile up in memory when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The installed recorder's handle, once installed.
static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs strata's recorder as the process's global recorder (the first call does; later
/// calls return the same handle) and describes every metric of the [`CATALOG`]. Fails only
/// when another recorder was installed before. Needs a tokio runtime: a task folds samples
/// into buckets every few seconds.
pub fn install() -> Result<PrometheusHandle> {
    let mut installed = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for metric in CATALOG {
        if let Kind::Histogram(buckets) = metric.kind {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(metric.name.to_string()), buckets.bounds())
                .map_err(|e| Error::Recorder(e.to_string()))?;
        }
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| Error::Recorder(e.to_string()))?;
    for metric in CATALOG {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram(_) => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
    metrics::gauge!("strata_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_EVERY);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    *installed = Some(handle.clone());
    Ok(handle)
}
