CREATE TABLE IF NOT EXISTS default.sharded_events (
    uuid UUID, event VARCHAR, properties VARCHAR CODEC(ZSTD(3)), timestamp DateTime64(6, 'UTC'), team_id Int64,
    distinct_id VARCHAR, elements_chain VARCHAR, created_at DateTime64(6, 'UTC'), person_id UUID,
    person_created_at DateTime64, person_properties VARCHAR CODEC(ZSTD(3)),
    group0_properties VARCHAR CODEC(ZSTD(3)), group1_properties VARCHAR CODEC(ZSTD(3)), group2_properties VARCHAR CODEC(ZSTD(3)),
    group3_properties VARCHAR CODEC(ZSTD(3)), group4_properties VARCHAR CODEC(ZSTD(3)),
    group0_created_at DateTime64, group1_created_at DateTime64, group2_created_at DateTime64, group3_created_at DateTime64, group4_created_at DateTime64,
    person_mode Enum8('full' = 0, 'propertyless' = 1, 'force_upgrade' = 2),
    `$group_0` VARCHAR MATERIALIZED replaceRegexpAll(JSONExtractRaw(properties, '$group_0'), '^"|"$', ''),
    `$session_id` VARCHAR MATERIALIZED replaceRegexpAll(JSONExtractRaw(properties, '$session_id'), '^"|"$', ''),
    `$window_id` VARCHAR MATERIALIZED replaceRegexpAll(JSONExtractRaw(properties, '$window_id'), '^"|"$', ''),
    _timestamp DateTime, _offset UInt64, inserted_at Nullable(DateTime64(6, 'UTC')) DEFAULT now64()
) ENGINE = ReplacingMergeTree(_timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))
SAMPLE BY cityHash64(distinct_id)
;
CREATE TABLE IF NOT EXISTS default.events AS default.sharded_events ENGINE = Merge(default, '^sharded_events$')
