INSERT INTO default.events (uuid, event, properties, timestamp, team_id, distinct_id, elements_chain, created_at, _timestamp, _offset)
SELECT
    generateUUIDv4(number),
    arrayElement(['$pageview', '$autocapture', '$identify', '$groupidentify', 'purchase — 購入'], number % 5 + 1),
    multiIf(
        number % 5 = 2, concat('{"$set": {"email": "user', toString(number % 97), '@example.com"}, "n": ', toString(number), '}'),
        number % 5 = 3, concat('{"$group_type": "company", "$group_key": "c', toString(number % 13), '", "$group_set": {"seats": ', toString(number % 50), '}}'),
        concat('{"$current_url": "https://example.com/ünï/', toString(number), '", "$browser": "Firefox", "$os": "Linux", "$lib": "web", "$session_id": "', toString(number % 1000), '", "n": ', toString(number), '}')),
    toDateTime64('{from}', 6, 'UTC') + toIntervalMicrosecond(((number - {first}) % {distinct_times}) * 60000001),
    {team},
    concat('user-', toString(number % 97)),
    if(number % 5 = 1, 'button.btn:text="Sign up"nth-child="1"', ''),
    now64(6), now(), number
FROM numbers({first}, {count})
