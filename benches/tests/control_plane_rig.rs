//! The end-to-end benchmark's rig works as the benchmark assumes: every
//! lifecycle launches one instance through the real control plane and
//! ends it, and the unavoidable path reaches all three stand-ins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use sprinters_benches::control_plane::ControlPlaneRig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_launch_once_and_end_everything() {
    let rig = Arc::new(ControlPlaneRig::start(Duration::ZERO).await);
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let rig = rig.clone();
            tokio::spawn(async move {
                let mut connection = rig.connect().await;
                for _ in 0..5 {
                    let latency = rig.lifecycle(&mut connection).await;
                    assert!(latency > Duration::ZERO);
                }
            })
        })
        .collect();
    for stream in streams {
        stream.await.unwrap();
    }
    // The warm-up job and 20 more, each on its own instance, all ended.
    let instances = rig.aws.instances();
    assert_eq!(instances.len(), 21);
    assert_eq!(rig.aws.live(), 0);
    assert_eq!(
        rig.aws.calls().get("AssumeRole"),
        Some(&1),
        "the role is assumed once and its credentials cached"
    );

    let baseline = rig.baseline().await;
    rig.unavoidable_path(&baseline, 1).await;
    let calls = rig.aws.calls();
    assert_eq!(calls.get("AssumeRole"), Some(&3), "{calls:?}");
    drop(baseline);
    Arc::into_inner(rig).unwrap().stop().await;
}
