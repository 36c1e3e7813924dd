-- PostHog's person tables as posthog/models/person/sql.py creates them (the Kafka and
-- writable tables left out): `person`, a ReplacingMergeTree on `version` (a merge or a
-- deletion writes a row of a higher version; `is_deleted` marks a deleted person), and
-- `person_distinct_id2`, a ReplacingMergeTree on `version` of which distinct id belongs
-- to which person now. Rows of one key are folded only by background merges, so a
-- reader takes the highest version itself.
CREATE TABLE IF NOT EXISTS default.person (
    id UUID,
    created_at DateTime64,
    team_id Int64,
    properties VARCHAR,
    is_identified Int8,
    is_deleted Int8,
    version UInt64,
    _timestamp DateTime,
    _offset UInt64,
    INDEX kafka_timestamp_minmax_person _timestamp TYPE minmax GRANULARITY 3
) ENGINE = ReplacingMergeTree(version)
ORDER BY (team_id, id);

CREATE TABLE IF NOT EXISTS default.person_distinct_id2 (
    team_id Int64,
    distinct_id VARCHAR,
    person_id UUID,
    is_deleted Int8,
    version Int64,
    _timestamp DateTime,
    _offset UInt64,
    _partition UInt64,
    INDEX kafka_timestamp_minmax_person_distinct_id2 _timestamp TYPE minmax GRANULARITY 3
) ENGINE = ReplacingMergeTree(version)
ORDER BY (team_id, distinct_id)
SETTINGS index_granularity = 512;
