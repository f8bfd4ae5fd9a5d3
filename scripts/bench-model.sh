# shellcheck shell=bash
# The Kinesis-model part of scripts/bench (`scripts/bench --kinesis-model`), sourced by
# it after PostgreSQL and bench_sink (started with --shards 4 --kinesis-model) are up:
# uses its psql_b, create_slot, load_rows, row_select, stop_streamer, sink_stat, calc,
# now, proc_hwm_kb and the variables BIN, work, pg_port, MODEL_ROWS, MODEL_SECS, R.
#
# Owns: the setups, one slot and one table each, their configs, the loss check and the
# table of figures. Must never leave a slot active: every setup stops its streamer.

# The model: 4 shards, each 1,000 records/s and 1 MiB/s.
MODEL_SHARDS=4
SHARD_RECORDS=1000
SHARD_BYTES=1048576
TXN_ROWS=1000

# model_table NAME PK: the benchmark row shape, with or without a primary key.
model_table() {
    local key="PRIMARY KEY"
    [ "$2" = yes ] || key=""
    psql_b -c "CREATE TABLE $1 (id bigint $key, name text, qty int,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(), amount numeric(12,2),
        attrs jsonb, active bool, code varchar(32))"
}

# model_config FILE STREAM MAX_IN_FLIGHT PKEY AGG SLOT...: one streamer config.
model_config() {
    local file=$1 stream=$2 inflight=$3 pkey=$4 agg=$5 slot
    shift 5
    {
        echo "shutdown_timeout_secs: 5"
        echo "replication_slots:"
        for slot in "$@"; do
            cat <<YML
  - $slot:
      host: 127.0.0.1
      port: $pg_port
      user: postgres
      db_name: postgres
      kns_stream: $stream
      create_slot: false
      checkpoint: false
      max_in_flight: $inflight
      options: {'format-version': 2, 'add-tables': 'public.$slot'}
YML
            [ "$pkey" = primary_key ] || echo "      partition_key: $pkey"
            [ "$agg" = none ] || echo "      aggregation: $agg"
        done
    } >"$file"
}

# lsn_num X/Y: an LSN as a decimal number.
lsn_num() { local hi=${1%/*} lo=${1#*/}; echo $(((16#$hi << 32) + 16#$lo)); }

# model_lost SLOT STATS_JSON ROWS: rows of transactions SLOT confirmed that are not on
# the stream. The slot's unconfirmed rows come from peeking it (the streamer is
# stopped); a transaction is confirmed when its commit_lsn is at or before the slot's
# confirmed_flush_lsn (the streamer confirms commit end positions, which are the
# records' commit_lsn).
model_lost() {
    local slot=$1 stats=$2 rows=$3 confirmed unconfirmed arrived
    confirmed="$(psql_b -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot'")"
    unconfirmed="$(psql_b -c "SELECT count(*) FROM pg_logical_slot_peek_changes('$slot', NULL, NULL,
        'format-version', '2', 'include-transaction', 'false')")"
    arrived="$(jq -r --argjson c "$(lsn_num "$confirmed")" \
        '[.distinct_by_commit_lsn[]? | select(.[0] <= $c) | .[1]] | add // 0' <<<"$stats")"
    echo $((rows - unconfirmed - arrived))
}

# model_measure KEY STREAM ROWS T0: waits until ROWS distinct rows arrived, the
# streamer exits, or MODEL_SECS pass; then stops the streamer and fills R[KEY_*].
model_measure() {
    local key=$1 stream=$2 rows=$3 t0=$4 logf=$5 got=0 deadline
    deadline=$(calc "$t0 + $MODEL_SECS")
    R[${key}_status]=ok
    while :; do
        got="$(sink_stat "$stream" '[.distinct_by_commit_lsn[]?[1]] | add // 0')"
        [ "$got" -ge "$rows" ] && break
        if ! kill -0 "$STREAMER_PID" 2>/dev/null; then
            # The config error names the key (`aggregation` before it existed), else the
            # first error line.
            R[${key}_status]="streamer exited: $(grep -m1 -o 'unknown key `[^`]*`' "$logf" ||
                grep -m1 -iE 'error' "$logf" | cut -c1-80)"
            break
        fi
        if awk "BEGIN { exit !($(now) >= $deadline) }"; then
            R[${key}_status]=capped
            break
        fi
        sleep 0.5
    done
    if kill -0 "$STREAMER_PID" 2>/dev/null; then
        R[${key}_hwm_mb]=$(calc "$(proc_hwm_kb "$STREAMER_PID") / 1024")
    else
        R[${key}_hwm_mb]=-
    fi
    stop_streamer
    local stats
    stats="$(curl -fsS --max-time 10 "http://127.0.0.1:$sink_port/stats/$stream")" ||
        die "cannot read bench_sink stats for $stream"
    echo "$stats" >"$work/stats-$stream.json"
    R[${key}_stats]=$stats
    R[${key}_arrived]=$(jq -r '[.distinct_by_commit_lsn[]?[1]] | add // 0' <<<"$stats")
    local first last users bytes active
    first=$(jq -r '.first_arrival_unix // 0' <<<"$stats")
    last=$(jq -r '.last_arrival_unix // 0' <<<"$stats")
    users=$(jq -r '.user_records // 0' <<<"$stats")
    bytes=$(jq -r '[.shards[]?.accepted_bytes] | add // 0' <<<"$stats")
    active=$(jq -r '[.shards[]? | select(.accepted_records > 0)] | length' <<<"$stats")
    R[${key}_throttled]=$(jq -r '.throttled_records // 0' <<<"$stats")
    R[${key}_violations]=$(jq -r '.order_violations // 0' <<<"$stats")
    R[${key}_duplicates]=$(jq -r '.duplicates // 0' <<<"$stats")
    R[${key}_aggregates]=$(jq -r '.aggregated_records // 0' <<<"$stats")
    R[${key}_active_shards]=$active
    if [ "${R[${key}_arrived]}" -gt 0 ] && [ "$users" -gt 0 ]; then
        R[${key}_secs]=$(calc "$last - $t0")
        R[${key}_rps]=$(calc "${R[${key}_arrived]} / ${R[${key}_secs]}")
        R[${key}_record_bytes]=$(calc "$bytes / $users")
        # From the process's start to the first record on the stream: the part of the
        # rate's time that is start-up (connecting, the shard map), not streaming.
        R[${key}_first_secs]=$(calc "$first - $t0")
    else
        R[${key}_secs]=$MODEL_SECS R[${key}_rps]=0 R[${key}_record_bytes]=0 R[${key}_first_secs]=0
    fi
}

# model_capacity KEY AGG HOT: rows/s the model can take for this setup: records/s of
# the shards its keys use, or for aggregates their bytes/s over the user-record size.
model_capacity() {
    local key=$1 agg=$2 hot=$3 shards=$MODEL_SHARDS
    [ "$hot" = yes ] && shards=1
    if [ "$agg" = none ]; then
        R[${key}_capacity]=$((shards * SHARD_RECORDS))
    elif [ "${R[${key}_record_bytes]%.*}" -gt 0 ]; then
        R[${key}_capacity]=$(calc "$shards * $SHARD_BYTES / ${R[${key}_record_bytes]}")
    else
        R[${key}_capacity]=0
    fi
    if [ "${R[${key}_capacity]%.*}" -gt 0 ]; then
        R[${key}_pct]=$(calc "100 * ${R[${key}_rps]} / ${R[${key}_capacity]}")
    else
        R[${key}_pct]=0
    fi
}

# model_setup KEY PK PKEY AGG HOT: one slot, one table of MODEL_ROWS rows, one stream.
model_setup() {
    local key=$1 pk=$2 pkey=$3 agg=$4 hot=$5
    local table="m_$key" stream="model-${key//_/-}" cfg="$work/m_$key.yml" t0
    log "model: $key (partition_key: $pkey, primary key: $pk, aggregation: $agg), $MODEL_ROWS rows"
    model_table "$table" "$pk"
    create_slot "$table"
    load_rows "$table" "$MODEL_ROWS" "$TXN_ROWS"
    model_config "$cfg" "$stream" 4 "$pkey" "$agg" "$table"
    t0=$(now)
    RUST_LOG="${RUST_LOG:-info}" "$BIN" run --config "$cfg" >"$work/streamer-$table.log" 2>&1 &
    STREAMER_PID=$!
    model_measure "$key" "$stream" "$MODEL_ROWS" "$t0" "$work/streamer-$table.log"
    model_capacity "$key" "$agg" "$hot"
    if [ "${R[${key}_arrived]}" -ge "$MODEL_ROWS" ]; then
        R[${key}_lost]=0
    elif [ "${R[${key}_hwm_mb]}" = - ] && [ "${R[${key}_arrived]}" = 0 ]; then
        R[${key}_lost]=-
    else
        R[${key}_lost]=$(model_lost "$table" "${R[${key}_stats]}" "$MODEL_ROWS")
    fi
    psql_b -c "SELECT pg_drop_replication_slot('$table')" >/dev/null || true
    log "model: $key: ${R[${key}_rps]} rows/s (${R[${key}_pct]}% of ${R[${key}_capacity]}), ${R[${key}_status]}"
}

# model_many_slots: 8 slots, max_in_flight 64, distinct keys, one stream: peak RSS
# while the shards throttle.
model_many_slots() {
    local key=slots8 stream=model-slots8 cfg="$work/m_slots8.yml" n=8 per=$((MODEL_ROWS / 2))
    local slots=() i t0 lost=0 confirmed=0 unconfirmed
    log "model: 8 slots, max_in_flight 64, $per rows each into one 4-shard stream"
    for i in $(seq 1 $n); do
        model_table "m8_t$i" yes
        create_slot "m8_t$i"
        slots+=("m8_t$i")
    done
    for i in $(seq 1 $n); do load_rows "m8_t$i" "$per" "$TXN_ROWS"; done
    model_config "$cfg" "$stream" 64 primary_key none "${slots[@]}"
    t0=$(now)
    RUST_LOG="${RUST_LOG:-info}" "$BIN" run --config "$cfg" >"$work/streamer-slots8.log" 2>&1 &
    STREAMER_PID=$!
    model_measure "$key" "$stream" $((per * n)) "$t0" "$work/streamer-slots8.log"
    model_capacity "$key" none no
    # Transactions of different slots share the stream, so the per-LSN check cannot tell
    # which slot confirmed what: check that at least every confirmed row arrived.
    for i in "${slots[@]}"; do
        unconfirmed="$(psql_b -c "SELECT count(*) FROM pg_logical_slot_peek_changes('$i', NULL, NULL,
            'format-version', '2', 'include-transaction', 'false')")"
        confirmed=$((confirmed + per - unconfirmed))
        psql_b -c "SELECT pg_drop_replication_slot('$i')" >/dev/null || true
    done
    lost=$((confirmed - R[${key}_arrived]))
    R[${key}_lost]=$((lost > 0 ? lost : 0))
    log "model: 8 slots: ${R[${key}_rps]} rows/s, peak RSS ${R[${key}_hwm_mb]} MiB, ${R[${key}_status]}"
}

model_bench() {
    local setups=(
        "distinct yes primary_key none no"
        "distinct_kpl yes primary_key kpl no"
        "table yes table none yes"
        "table_kpl yes table kpl yes"
        "nopk no primary_key none yes"
        "nopk_kpl no primary_key kpl yes"
    )
    local s
    for s in "${setups[@]}"; do
        # shellcheck disable=SC2086 # one setup's fields
        model_setup $s
    done
    model_many_slots
    R[wall_secs]=$((SECONDS - WALL_START))

    printf '\npg-cdc-to-kinesis against the Kinesis model  (%s, %s CPUs, load average at start %s, at end %s)\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$LOADAVG" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'model: %s shards, 20 ms per PutRecords, %s records/s and %s B/s per shard; %s rows per setup in %s-row transactions, at most %s s each\n' \
        "$MODEL_SHARDS" "$SHARD_RECORDS" "$SHARD_BYTES" "$MODEL_ROWS" "$TXN_ROWS" "$MODEL_SECS"
    local fmt='%-30s %-5s %9s %9s %6s %10s %7s %6s %6s %8s  %s\n'
    # shellcheck disable=SC2059 # the format is ours
    printf "$fmt" setup agg rows/s capacity "%cap" throttled "order" dups lost "RSS MiB" "arrived / status"
    local key label agg
    for s in "distinct:primary_key (distinct keys)" "table:partition_key: table" "nopk:no primary key" "slots8:8 slots, max_in_flight 64"; do
        for agg in none kpl; do
            key=${s%%:*} label=${s#*:}
            [ "$agg" = kpl ] && key="${key}_kpl"
            [ -n "${R[${key}_status]:-}" ] || continue
            # shellcheck disable=SC2059
            printf "$fmt" "$label" "$agg" "${R[${key}_rps]%.*}" "${R[${key}_capacity]%.*}" "${R[${key}_pct]%.*}" \
                "${R[${key}_throttled]}" "${R[${key}_violations]}" "${R[${key}_duplicates]}" "${R[${key}_lost]}" \
                "${R[${key}_hwm_mb]}" "${R[${key}_arrived]} in ${R[${key}_secs]} s (first after ${R[${key}_first_secs]} s), ${R[${key}_status]}"
        done
    done
    printf '(capacity: records/s of the shards the keys use; aggregated, those shards'"'"' bytes/s over the mean user-record size. lost: rows of confirmed transactions not on the stream. rows/s counts from the streamer'"'"'s start; "first after" is when the first record arrived. wall time %s s)\n' "${R[wall_secs]}"
    if [ -n "$JSON_OUT" ]; then
        local args=(--arg loadavg "$LOADAVG" --argjson rows "$MODEL_ROWS" --argjson secs "$MODEL_SECS")
        local k
        for k in "${!R[@]}"; do
            case "$k" in *_stats | *_status | *_hwm_mb | *_lost) args+=(--arg "$k" "${R[$k]}") ;; *) args+=(--argjson "$k" "${R[$k]}") ;; esac
        done
        jq -n "${args[@]}" '$ARGS.named | with_entries(select(.key | endswith("_stats") | not))' >"$JSON_OUT" ||
            die "cannot write $JSON_OUT"
        log "wrote $JSON_OUT"
    fi
}
