//! Request sizes against a stream that answers at once: a transaction whose records
//! are still arriving fills its requests, and one that has committed goes at once.
//! `linger_ms` is a minute here, so that how long a request waits never depends on
//! the machine's speed.

use super::*;

const LINGER: &str = "      linger_ms: 60000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_transaction_goes_in_full_requests_although_the_stream_answers_at_once() {
    let d = Delivery::start_fast("full", &table("bulk", true), LINGER).await;
    let (sql, truth) = versions("bulk", 1000, 1);
    d.execute(&sql);
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("full", &truth, &records);
    // Before, each answer found the next few records waiting and sent them at once.
    assert_eq!(
        d.stub.stats().records_per_request,
        [500, 500],
        "a 1,000-row transaction of distinct keys: two full requests"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_goes_at_once_whatever_linger_ms_says() {
    let d = Delivery::start_fast("commit", &table("few", true), LINGER).await;
    let (sql, truth) = versions("few", 3, 1);
    d.execute(&sql);
    let took = Instant::now();
    let arrived = d
        .stub
        .wait_for_records(&d.stream, truth.len(), Duration::from_secs(15))
        .await
        .len();
    let took = took.elapsed();
    assert_eq!(
        arrived,
        truth.len(),
        "after {took:?}, against a linger of 60 s"
    );
    assert_eq!(d.stub.stats().records_per_request, [3]);
    d.stop().await;
}
