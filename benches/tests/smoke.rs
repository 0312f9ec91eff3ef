//! Every workload runs on every allocator built into the harness (tiny windows; no
//! timing assertions: only that the numbers are sane and no allocator corrupts data).

use std::time::Duration;

use cpuheap_bench::peers::{Group, Kind, Region};
use cpuheap_bench::with_alloc;
use cpuheap_bench::workloads::{self, Params};

fn params() -> Params {
    Params {
        window: Duration::from_millis(2),
        max_ops: 4096,
        seed: 7,
    }
}

#[test]
fn every_workload_on_every_allocator() {
    cpuheap_bench::peers::rp_init_process();
    let region = Region::new(64 << 20);
    for k in Kind::ALL.into_iter().filter(|k| k.available()) {
        let p = params();
        let t = with_alloc!(k, &region, |a| workloads::churn(a, 1, 256, p));
        assert!(t.ops > 0 && t.secs > 0.0, "{k:?} churn");
        let t = with_alloc!(k, &region, |a| workloads::churn(a, 2, 256, p));
        assert!(t.ops > 0, "{k:?} churn 2T");
        let t = with_alloc!(k, &region, |a| workloads::producer_consumer(a, p));
        assert!(t.ops > 0, "{k:?} producer/consumer");
        let t = with_alloc!(k, &region, |a| workloads::mixed(a, 2, 128, p));
        assert!(t.ops > 0, "{k:?} mixed");
        let l = with_alloc!(k, &region, |a| workloads::latency(a, 1, 256, p));
        assert!(
            l.alloc[0] <= l.alloc[1] && l.alloc[1] <= l.alloc[2],
            "{k:?} latency {l:?}"
        );
    }
}

#[test]
fn efficiency_is_a_fraction() {
    let region = Region::new(2 << 20);
    for k in Kind::ALL
        .into_iter()
        .filter(|k| k.available() && k.group() == Group::BareMetal)
    {
        let e = with_alloc!(k, &region, |a| workloads::efficiency(a, region.len(), 1));
        assert!(e > 0.3 && e <= 1.0, "{k:?} efficiency {e}");
    }
}
