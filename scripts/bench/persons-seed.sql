-- Persons as posthog-js's identify and PostHog's ingestion leave them in PostHog's own
-- person tables (cli/tests/clickhouse/persons.sql), for `npm run bench:persons`: 1-2 KB
-- of properties each (email and name on identified persons, the $initial_* properties
-- and $initial_geoip_* that $set_once records on a person's first event, the current
-- device, page and $geoip_* ones, utm fields, nested values, nulls, unicode), 1 to 4
-- distinct ids (a device id, and the user's own id once identified), one person in five
-- with an older version not merged away yet, one in a hundred deleted.
-- Persons {first} to {first}+{count} of team {team}. Each statement is run on its own.

-- Every person at its current version (2 for those with an older row below, else 0).
INSERT INTO default.person (id, created_at, team_id, properties, is_identified, is_deleted, version, _timestamp, _offset)
SELECT
    toUUID(concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-4', substring(h, 14, 3), '-8', substring(h, 18, 3), '-', substring(h, 21, 12))),
    toDateTime64('2021-06-01 00:00:00', 3) + toIntervalSecond(number * 7),
    {team},
    concat('{',
        if(ids > 1, concat('"email": "user', toString(number), '@example.com", "name": "', arrayElement(['Ana Luísa', 'Jürgen', '李小龙', 'Zoë', 'Ольга', 'José'], n % 6 + 1), ' ', toString(number), '", '), ''),
        '"$initial_os": "', arrayElement(['Mac OS X', 'Windows', 'iOS', 'Android', 'Linux'], n % 5 + 1), '", ',
        '"$initial_browser": "', arrayElement(['Chrome', 'Safari', 'Firefox', 'Microsoft Edge', 'Mobile Safari'], n % 5 + 1), '", ',
        '"$initial_browser_version": ', toString(100 + n % 30), ', ',
        '"$initial_device_type": "', arrayElement(['Desktop', 'Desktop', 'Mobile', 'Mobile', 'Tablet'], n % 5 + 1), '", ',
        '"$initial_current_url": "https://www.example.com/pricing?utm_source=newsletter&utm_campaign=spring-', toString(n % 12), '", ',
        '"$initial_pathname": "/pricing", ',
        '"$initial_referrer": "https://www.google.com/", "$initial_referring_domain": "www.google.com", ',
        '"$initial_utm_source": "newsletter", "$initial_utm_medium": "email", "$initial_utm_campaign": "spring-', toString(n % 12), '", ',
        '"$initial_gclid": null, ',
        '"$initial_geoip_city_name": "', arrayElement(['Lisboa', 'München', 'São Paulo', '東京', 'Kraków'], n % 5 + 1), '", ',
        '"$initial_geoip_country_name": "', arrayElement(['Portugal', 'Germany', 'Brazil', 'Japan', 'Poland'], n % 5 + 1), '", ',
        '"$initial_geoip_country_code": "', arrayElement(['PT', 'DE', 'BR', 'JP', 'PL'], n % 5 + 1), '", ',
        '"$initial_geoip_continent_name": "Europe", "$initial_geoip_continent_code": "EU", ',
        '"$initial_geoip_latitude": 38.7', toString(n % 10), ', "$initial_geoip_longitude": -9.1', toString(n % 10), ', ',
        '"$initial_geoip_time_zone": "Europe/Lisbon", "$initial_geoip_postal_code": "1000-00', toString(n % 10), '", ',
        '"$initial_geoip_subdivision_1_name": "Lisbon", ',
        '"$os": "', arrayElement(['Mac OS X', 'Windows', 'iOS', 'Android', 'Linux'], (n + 1) % 5 + 1), '", ',
        '"$browser": "', arrayElement(['Chrome', 'Safari', 'Firefox', 'Microsoft Edge', 'Mobile Safari'], (n + 1) % 5 + 1), '", ',
        '"$browser_version": ', toString(110 + n % 20), ', ',
        '"$device_type": "', arrayElement(['Desktop', 'Mobile', 'Tablet'], n % 3 + 1), '", ',
        '"$current_url": "https://app.example.com/ünï/projects/', toString(n % 500), '/dashboard", ',
        '"$pathname": "/ünï/projects/', toString(n % 500), '/dashboard", ',
        '"$referring_domain": "$direct", ',
        '"$geoip_city_name": "', arrayElement(['Porto', 'Berlin', 'Rio de Janeiro', '大阪', 'Warszawa'], n % 5 + 1), '", ',
        '"$geoip_country_code": "', arrayElement(['PT', 'DE', 'BR', 'JP', 'PL'], n % 5 + 1), '", ',
        '"$geoip_continent_code": "EU", "$geoip_latitude": 41.1', toString(n % 10), ', "$geoip_longitude": -8.6', toString(n % 10), ', ',
        '"$geoip_time_zone": "Europe/Lisbon", ',
        '"utm_source": "', arrayElement(['newsletter', 'google', 'twitter', 'partner'], n % 4 + 1), '", "utm_medium": "email", ',
        '"utm_campaign": "autumn-', toString(n % 9), '", "utm_content": null, ',
        '"plan": "', arrayElement(['free', 'pro', 'enterprise'], n % 3 + 1), '", ',
        '"company": {"name": "Company ', toString(n % 37), '", "seats": ', toString(n % 50), ', "tags": ["b2b", "eu", "', toString(n % 7), '"]}, ',
        '"preferences": {"theme": "dark", "notifications": {"email": true, "digest": null}, "locale": "pt-PT"}, ',
        '"signed_up_at": "2021-0', toString(n % 9 + 1), '-1', toString(n % 10), 'T10:00:00Z", ',
        '"about": "', repeat('Ich mag Äpfel. ', n % 12), '", ',
        '"$creator_event_uuid": "0189', lower(hex(cityHash64(number, 1))), '"',
    '}'),
    ids > 1,
    0,
    if(number % 5 = 0, 2, 0),
    now(),
    number
FROM (SELECT number, cityHash64(number) % 1000000 AS n, lower(hex(MD5(concat('{team}-', toString(number))))) AS h,
             multiIf(n % 10 < 4, 1, n % 10 < 7, 2, n % 10 < 9, 3, 4) AS ids
      FROM numbers({first}, {count}));

-- One person in five: its older version, not merged away yet (fewer, older properties).
INSERT INTO default.person (id, created_at, team_id, properties, is_identified, is_deleted, version, _timestamp, _offset)
SELECT
    toUUID(concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-4', substring(h, 14, 3), '-8', substring(h, 18, 3), '-', substring(h, 21, 12))),
    toDateTime64('2021-06-01 00:00:00', 3) + toIntervalSecond(number * 7),
    {team},
    concat('{"$initial_os": "Windows", "$os": "Windows", "plan": "trial", "$geoip_city_name": "Faro"}'),
    0, 0, 1, now(), number
FROM (SELECT number, lower(hex(MD5(concat('{team}-', toString(number))))) AS h FROM numbers({first}, {count}))
WHERE number % 5 = 0;

-- One person in a hundred deleted: a row of a higher version with is_deleted.
INSERT INTO default.person (id, created_at, team_id, properties, is_identified, is_deleted, version, _timestamp, _offset)
SELECT
    toUUID(concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-4', substring(h, 14, 3), '-8', substring(h, 18, 3), '-', substring(h, 21, 12))),
    toDateTime64('2021-06-01 00:00:00', 3) + toIntervalSecond(number * 7),
    {team}, '{}', 0, 1, 100, now(), number
FROM (SELECT number, lower(hex(MD5(concat('{team}-', toString(number))))) AS h FROM numbers({first}, {count}))
WHERE number % 100 = 7;

-- Distinct ids: the first a device id (posthog-js's, a UUIDv7-like text), further ones
-- other devices; an identified person's last is the user's own id. A person in five also
-- has its first id's row of an older version, not merged away yet; a deleted person's
-- ids are deleted with it (rows of a higher version with is_deleted).
INSERT INTO default.person_distinct_id2 (team_id, distinct_id, person_id, is_deleted, version, _timestamp, _offset, _partition)
SELECT
    {team},
    if(j = ids - 1 AND ids > 1, concat('user-', toString(number)), concat('0189', lower(hex(cityHash64(number, j))), '-7e3a-', toString(j))),
    toUUID(concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-4', substring(h, 14, 3), '-8', substring(h, 18, 3), '-', substring(h, 21, 12))),
    tupleElement(row, 1),
    tupleElement(row, 2),
    now(), number, 0
FROM (SELECT number, cityHash64(number) % 1000000 AS n, lower(hex(MD5(concat('{team}-', toString(number))))) AS h,
             multiIf(n % 10 < 4, 1, n % 10 < 7, 2, n % 10 < 9, 3, 4) AS ids, arrayJoin(range(ids)) AS j
      FROM numbers({first}, {count}))
-- (is_deleted, version) of each row of the distinct id
ARRAY JOIN arrayConcat([(0, 1)], if(j = 0 AND number % 5 = 0, [(0, 0)], []), if(number % 100 = 7, [(1, 2)], [])) AS row;
