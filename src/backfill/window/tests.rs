//! Unit tests of the backfill window: changes inside the window drop their buffered
//! rows, an update missing a TOASTed column gets the snapshot row first, and other
//! runs, slots and stale rows are ignored.

use super::*;

fn col(name: &str, raw: &str) -> Column {
    Column::new(name, crate::decode::Json::parse(raw).unwrap())
}

fn row(id: u32, v: &str) -> Vec<Column> {
    vec![
        col("id", &id.to_string()),
        col("v", &format!("\"{v}\"")),
        col("big", "\"toast\""),
    ]
}

fn chunk(n: u64, ids: &[u32]) -> ChunkRows {
    ChunkRows {
        table: "public.t".into(),
        chunk: n,
        rows: Some(BufferedChunk {
            schema: "public".into(),
            name: "t".into(),
            key: vec!["id".into()],
            pk: vec!["id".into()],
            rows: ids.iter().map(|i| row(*i, "snap")).collect(),
        }),
    }
}

fn mark(run: &str, n: u64, mark: Mark) -> Signal {
    Signal::Watermark {
        slot: "s".into(),
        run: run.into(),
        table: "public.t".into(),
        chunk: n,
        mark,
    }
}

fn change(kind: Kind, columns: Vec<Column>, identity: Vec<Column>) -> Change {
    Change::of_table(kind, "t", columns, identity)
}

fn ids(emit: &Emit) -> Vec<String> {
    emit.rows
        .iter()
        .map(|c| c.columns[0].value.get().to_string())
        .collect()
}

#[test]
fn changes_inside_the_window_drop_their_rows() {
    let mut w = Windows::new("s", "r1");
    assert_eq!(w.on_signal(&mark("r1", 1, Mark::Low)).0, Step::NeedRows);
    assert!(w.waiting());
    w.deliver(chunk(1, &[1, 2, 3, 4, 5]));
    assert!(!w.waiting());
    // Update, delete, and a key change away from 4 and onto 9.
    assert!(w
        .on_change(&change(Kind::Update, row(1, "new"), vec![]))
        .is_none());
    assert!(w
        .on_change(&change(Kind::Delete, vec![], vec![col("id", "2")]))
        .is_none());
    w.on_change(&change(Kind::Update, row(9, "moved"), vec![col("id", "4")]));
    // Another table's change of the same key is not this row's.
    let mut other = change(Kind::Delete, vec![], vec![col("id", "3")]);
    other.table = "u".into();
    w.on_change(&other);
    let (_, emit) = w.on_signal(&mark("r1", 1, Mark::High));
    let emit = emit.unwrap();
    assert_eq!(ids(&emit), ["3", "5"]);
    assert!(emit
        .rows
        .iter()
        .all(|c| c.kind == Kind::Read && c.pk[..] == ["id"]));
    assert_eq!(w.on_commit(), Some(("public.t".into(), 1, 2)));
    assert_eq!(w.on_commit(), None);
    // Outside a window, changes touch nothing.
    assert!(w
        .on_change(&change(Kind::Update, row(3, "x"), vec![]))
        .is_none());
}

#[test]
fn an_update_without_its_toasted_column_gets_the_snapshot_row_first() {
    let mut w = Windows::new("s", "r1");
    w.deliver(chunk(1, &[1, 2]));
    assert_eq!(
        w.on_signal(&mark("r1", 1, Mark::Low)).0,
        Step::Pass,
        "rows were there first"
    );
    let partial = vec![col("id", "1"), col("v", "\"upd\"")];
    let first = w.on_change(&change(Kind::Update, partial, vec![])).unwrap();
    assert_eq!(ids(&first), ["1"]);
    assert_eq!(first.rows[0].columns[2].value.get(), "\"toast\"");
    let (_, emit) = w.on_signal(&mark("r1", 1, Mark::High));
    assert_eq!(ids(&emit.unwrap()), ["2"], "sent once only");
}

#[test]
fn other_runs_and_slots_and_stale_rows_are_ignored() {
    let mut w = Windows::new("s", "r2");
    assert_eq!(
        w.on_signal(&mark("r1", 1, Mark::Low)).0,
        Step::Pass,
        "an earlier run's"
    );
    assert!(!w.waiting());
    let mut foreign = mark("r2", 1, Mark::Low);
    if let Signal::Watermark { slot, .. } = &mut foreign {
        *slot = "other".into();
    }
    assert_eq!(w.on_signal(&foreign).0, Step::Pass);
    // A truncate inside the window empties it.
    w.deliver(chunk(2, &[1, 2]));
    w.on_signal(&mark("r2", 2, Mark::Low));
    w.on_change(&change(Kind::Truncate, vec![], vec![]));
    let (_, emit) = w.on_signal(&mark("r2", 2, Mark::High));
    assert!(emit.unwrap().rows.is_empty());
    // A failed read opens an empty window.
    w.on_signal(&mark("r2", 3, Mark::Low));
    w.deliver(ChunkRows {
        table: "public.t".into(),
        chunk: 3,
        rows: None,
    });
    assert!(!w.waiting());
    let (_, emit) = w.on_signal(&mark("r2", 3, Mark::High));
    assert!(emit.unwrap().rows.is_empty());
}
