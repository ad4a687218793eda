//! One dial budget shared by every node on a PostgreSQL database: nodes asking at once never
//! get more slots than the account's rate in any window, every dial gets a slot (queued,
//! never refused), and an inbound ring goes ahead of a click-to-call dial that was waiting.

mod common;

use ringmaster_core::Timestamp;
use ringmaster_server::dial_limit::{
    busiest_window, DialBudget, DialGrant, DialLimit, DialPriority, SharedDialBudget,
    ARRIVAL_MARGIN, LOW_PRIORITY_HORIZON, TELNYX_DIAL_WINDOW,
};
use ringmaster_store::{PostgresStore, Store};
use std::sync::Arc;

const ACCOUNT: &str = "connection-1";

/// `nodes` budgets on one fresh schema, each over its own store (its own connection pool),
/// as separate processes would have them.
async fn nodes(n: usize, limit: DialLimit) -> (Vec<Arc<SharedDialBudget>>, String) {
    let (url, schema) = common::postgres_schema().await;
    let mut budgets = Vec::new();
    for _ in 0..n {
        let store = PostgresStore::open(&url).await.unwrap();
        let ledger = store
            .dial_ledger()
            .expect("PostgreSQL shares a dial ledger");
        budgets.push(Arc::new(SharedDialBudget::new(ledger, ACCOUNT, limit)));
    }
    (budgets, schema)
}

fn slot(grant: DialGrant) -> Timestamp {
    match grant {
        DialGrant::At(at) => at,
        DialGrant::AskAgain(at) => panic!("an inbound ring is never turned away (ask at {at:?})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_asking_for_300_dials_at_once_stay_within_the_rate() {
    // 2 dials/s over Telnyx's 5 s window: 10 per window, so 300 dials span 30 windows.
    let limit = DialLimit::per_second(2);
    let (budgets, schema) = nodes(3, limit).await;
    let now = Timestamp::from_millis(1_700_000_000_000);
    let mut asks = Vec::new();
    for (n, budget) in budgets.iter().enumerate() {
        for i in 0..100 {
            let budget = budget.clone();
            // Inbound and click-to-call interleaved; a click-to-call dial turned away asks
            // again at the time it was told, as the dispatcher does.
            let priority = if (n + i) % 4 == 0 {
                DialPriority::ClickToCall
            } else {
                DialPriority::InboundRing
            };
            asks.push(tokio::spawn(async move {
                let mut at = now;
                loop {
                    match budget.request(priority, at).await.unwrap() {
                        DialGrant::At(slot) => {
                            assert!(slot >= at, "a slot before it was asked for");
                            return (priority, slot);
                        }
                        DialGrant::AskAgain(next) => {
                            assert!(next > at, "asked to come back at once");
                            at = next;
                        }
                    }
                }
            }));
        }
    }
    let mut granted = Vec::new();
    for ask in asks {
        granted.push(ask.await.unwrap());
    }
    let slots: Vec<Timestamp> = granted.iter().map(|(_, at)| *at).collect();
    assert_eq!(slots.len(), 300, "every dial gets a slot");
    // Bursts are a window plus the arrival margin apart, so dials a little late still land
    // within the account's window.
    let spacing = TELNYX_DIAL_WINDOW + ARRIVAL_MARGIN;
    assert_eq!(busiest_window(&slots, spacing), limit.max_dials as usize);
    // Queued back to back: 30 full bursts, no slot left empty.
    let last = slots.iter().max().copied().unwrap();
    assert_eq!(last, now + spacing * 29);
    common::drop_postgres_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_ring_goes_before_a_click_to_call_dial_waiting_on_another_node() {
    let limit = DialLimit::per_second(1);
    let (budgets, schema) = nodes(2, limit).await;
    let (a, b) = (&budgets[0], &budgets[1]);
    let now = Timestamp::from_millis(1_700_000_000_000);
    // Node A fills four windows with rings.
    for _ in 0..20 {
        slot(a.request(DialPriority::InboundRing, now).await.unwrap());
    }
    // Node B's click-to-call is turned away; node A's next ring, asked later, still queues.
    let DialGrant::AskAgain(retry) = b.request(DialPriority::ClickToCall, now).await.unwrap()
    else {
        panic!("click-to-call booked a slot behind four windows of rings");
    };
    let ring = slot(a.request(DialPriority::InboundRing, now).await.unwrap());
    assert_eq!(ring, now + (TELNYX_DIAL_WINDOW + ARRIVAL_MARGIN) * 4);
    // When B asks again, the ring that came after it is already ahead of it.
    let mut at = retry;
    let click = loop {
        match b.request(DialPriority::ClickToCall, at).await.unwrap() {
            DialGrant::At(slot) => break slot,
            DialGrant::AskAgain(next) => at = next,
        }
    };
    assert!(
        click >= ring,
        "click-to-call at {click:?}, ring at {ring:?}"
    );
    assert!(click <= at + LOW_PRIORITY_HORIZON);
    assert_eq!(a.queued(), 16, "rings past the first window waited");
    common::drop_postgres_schema(&schema).await;
}
