CREATE TABLE IF NOT EXISTS default.events (
    uuid UUID, event String, properties String, timestamp DateTime64(6, 'UTC'), team_id Int64,
    distinct_id String, elements_chain String, created_at DateTime64(6, 'UTC'), person_id UUID,
    person_properties String, `$group_0` String, `$group_1` String, `$group_2` String, `$group_3` String,
    `$group_4` String, _timestamp DateTime, _offset UInt64
) ENGINE = MergeTree ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))
