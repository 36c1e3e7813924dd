// Realistic events as a self-hosted PostHog captured them, and the shapes in which its
// plugin server hands them to a plugin: live (onEvent), or replayed by the historical
// export of PostHog <= 1.29 (no uuid, no elements) or >= 1.30 (marked, elements
// rebuilt from the database).

/** A small deterministic PRNG, so every run sees the same sample. */
export function random(seed) {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
}

function uuidFrom(next) {
  const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16));
  hex[12] = '4';
  hex[16] = '89ab'[Math.floor(next() * 4)];
  const h = hex.join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const PAGES = ['/', '/pricing', '/docs/getting-started', '/blog/migrating-posthog', '/signup', '/ünïcödé/页面'];
const BROWSERS = ['Chrome', 'Firefox', 'Safari', 'Edge'];

function buttonElements(next) {
  return [
    {
      tag_name: 'button',
      $el_text: next() < 0.5 ? 'Sign up' : 'Ça marche 🚀',
      attr__class: 'btn btn-primary',
      classes: ['btn', 'btn-primary'],
      attr__id: 'cta',
      'attr__data-attr': 'signup-cta',
      nth_child: 2,
      nth_of_type: 1,
    },
    { tag_name: 'a', $el_text: 'Pricing', attr__href: '/pricing', attr__class: 'nav-link', classes: ['nav-link'], nth_child: 1, nth_of_type: 1 },
    { tag_name: 'div', attr__class: 'container', classes: ['container'], nth_child: 1, nth_of_type: 1 },
  ];
}

/**
 * `count` events between `from` and `to` (ms), as the source captured them: each with
 * its uuid, a distinct_id, an ISO timestamp and posthog-js properties.
 */
export function sampleEvents({ count = 60, from, to, seed = 7, users = 12 }) {
  const next = random(seed);
  const span = to - from;
  const events = [];
  for (let i = 0; i < count; i++) {
    const user = `user-${Math.floor(next() * users)}`;
    const at = new Date(from + Math.floor((span * (i + next())) / count));
    const base = {
      uuid: uuidFrom(next),
      distinct_id: user,
      timestamp: at.toISOString(),
      properties: {
        $lib: 'web',
        $lib_version: '1.30.0',
        $browser: BROWSERS[Math.floor(next() * BROWSERS.length)],
        $current_url: `https://example.com${PAGES[i % PAGES.length]}`,
        $ip: `203.0.113.${Math.floor(next() * 250)}`,
        $geoip_country_code: 'PT',
        $time: at.getTime() / 1000,
        token: 'phc_source_project_token',
        distinct_id: user,
      },
    };
    const kind = i % 10;
    if (kind <= 2) events.push({ ...base, event: '$pageview' });
    else if (kind <= 4) {
      events.push({
        ...base,
        event: '$autocapture',
        properties: { ...base.properties, $event_type: 'click', $elements: buttonElements(next) },
      });
    } else if (kind === 5) {
      events.push({
        ...base,
        event: '$identify',
        $set: { email: `${user}@example.com`, name: `Ünïcode Ñame ${i}` },
        properties: { ...base.properties, $set: { plan: i % 2 ? 'free' : 'pro' }, $anon_distinct_id: `anon-${i}` },
      });
    } else if (kind === 6) {
      events.push({
        ...base,
        event: '$groupidentify',
        properties: { ...base.properties, $group_type: 'company', $group_key: `company-${i % 3}`, $group_set: { name: `Company ${i % 3}`, seats: 10 + i } },
      });
    } else if (kind === 7) {
      events.push({ ...base, event: '$create_alias', properties: { ...base.properties, alias: `alias-of-${user}` } });
    } else if (kind === 8) {
      events.push({
        ...base,
        event: 'report generated',
        properties: { ...base.properties, report: 'x'.repeat(20_000 + Math.floor(next() * 20_000)), rows: Math.floor(next() * 1000) },
      });
    } else {
      events.push({ ...base, event: 'purchase — 購入', properties: { ...base.properties, amount: 19.99, currency: 'EUR', items: [{ sku: 'A-1', qty: 2 }] } });
    }
  }
  return events;
}

/** posthog-js element → the database's Element, as PostHog >= 1.30 rebuilds it. */
function databaseElement(el) {
  const attributes = Object.fromEntries(Object.entries(el).filter(([k]) => k.startsWith('attr__')));
  return {
    text: el.$el_text ?? null,
    tag_name: el.tag_name,
    href: el.attr__href ?? null,
    attr_class: el.attr__class ? el.attr__class.split(' ') : null,
    attr_id: el.attr__id ?? null,
    nth_child: el.nth_child,
    nth_of_type: el.nth_of_type,
    attributes,
  };
}

/** When the source stored an event: its timestamp, or (none sent) when it arrived. */
export function storedTime(event) {
  for (const candidate of [event.timestamp, event.now]) {
    const t = Date.parse(candidate);
    if (!Number.isNaN(t)) return t;
  }
  return 0;
}

let exportCount = 0;

/**
 * A source event as the historical export hands it to exportEvents: `shape` is '1.29'
 * (Postgres rows, no uuid), '1.30' (marked, from ClickHouse) or '1.30-postgres' (marked,
 * from Postgres: a new uuid on every export, the row id `rowId` beside it). `storedAtMs`:
 * when the source stored it (the row's created_at).
 */
export function asExported(event, shape, nowMs, rowId = 0, storedAtMs = storedTime(event)) {
  if (!event.timestamp) event = { ...event, timestamp: new Date(storedTime(event)).toISOString() };
  const { uuid, $set, $set_once, ...rest } = event;
  const properties = { ...event.properties };
  // Ingestion stored only properties, with a top-level $set/$set_once merged in.
  if ($set) properties.$set = { ...properties.$set, ...$set };
  if ($set_once) properties.$set_once = { ...properties.$set_once, ...$set_once };
  const now = new Date(nowMs).toISOString();
  if (shape === '1.29') {
    // Postgres rows: elements went to their own table at ingestion; no uuid, no marker;
    // 1.10.5 puts the row's created_at in sent_at.
    delete properties.$elements;
    return { ...rest, team_id: 2, properties, now, ip: properties.$ip || '', site_url: '', sent_at: new Date(storedAtMs).toISOString() };
  }
  if (properties.$elements) properties.$elements = properties.$elements.map(databaseElement);
  properties.$$is_historical_export_event = true;
  properties.$$historical_export_timestamp = now;
  if (shape === '1.30-postgres') {
    properties.$$historical_export_source_db = 'postgres';
    properties.$$postgres_event_id = rowId;
    exportCount += 1;
    const fresh = `${(exportCount % 0xffffffff).toString(16).padStart(8, '0')}-0000-4000-8000-${rowId.toString(16).padStart(12, '0')}`;
    return { ...rest, uuid: fresh, team_id: 2, properties, now, ip: properties.$ip || '', site_url: '', sent_at: null };
  }
  properties.$$historical_export_source_db = 'clickhouse';
  return { ...rest, uuid, team_id: 2, properties, now, ip: properties.$ip || '', site_url: '', sent_at: null };
}

/** A source event as onEvent receives it when it is ingested live (plugin server 1.10.x). */
export function asLive(event, nowMs) {
  return {
    ...event,
    team_id: 2,
    now: new Date(nowMs).toISOString(),
    sent_at: new Date(nowMs).toISOString(),
    ip: event.properties.$ip,
    site_url: 'https://posthog.source.example',
  };
}

/**
 * The benchmark's corpus: `count` events spread evenly over [from, to), each made
 * from its index alone, so any of them can be generated when needed. About 1.6 KB
 * each on average; a third autocapture with elements; one in a hundred large.
 */
export function corpus({ count, from, to, seed = 11 }) {
  const step = (to - from) / count;
  const event = (i) => {
    const next = random(seed * 1_000_003 + i);
    const at = new Date(from + Math.floor(i * step));
    const user = `user-${Math.floor(next() * 5000)}`;
    const properties = {
      $os: 'Mac OS X',
      $os_version: '14.2.1',
      $raw_user_agent: `Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${120 + (i % 5)}.0.0.0 Safari/537.36`,
      $initial_referrer: '$direct',
      $initial_referring_domain: '$direct',
      $initial_current_url: `https://app.example.com/?utm_campaign=launch-${i % 13}`,
      $browser: BROWSERS[i % BROWSERS.length],
      $browser_version: 120 + (i % 5),
      $device_type: 'Desktop',
      $current_url: `https://app.example.com${PAGES[i % PAGES.length]}?ref=${i % 97}`,
      $host: 'app.example.com',
      $pathname: PAGES[i % PAGES.length],
      $screen_height: 1117,
      $screen_width: 1728,
      $viewport_height: 960,
      $viewport_width: 1728,
      $lib: 'web',
      $lib_version: '1.96.1',
      $insert_id: `ins${i.toString(36)}${Math.floor(next() * 1e9).toString(36)}`,
      $time: at.getTime() / 1000,
      distinct_id: user,
      $device_id: `018c${Math.floor(next() * 1e12).toString(16)}`,
      $referrer: '$direct',
      $referring_domain: '$direct',
      $session_id: `018c-${Math.floor(next() * 1e12).toString(16)}`,
      $window_id: `018c-${Math.floor(next() * 1e12).toString(16)}`,
      $pageview_id: `018c-${Math.floor(next() * 1e12).toString(16)}`,
      $ip: `198.51.100.${i % 250}`,
      $geoip_city_name: 'Lisbon',
      $geoip_country_name: 'Portugal',
      $geoip_country_code: 'PT',
      $geoip_continent_name: 'Europe',
      $geoip_latitude: 38.7167,
      $geoip_longitude: -9.1333,
      $geoip_time_zone: 'Europe/Lisbon',
      token: 'phc_source_project_token',
      utm_source: i % 7 === 0 ? 'newsletter' : undefined,
      plan: i % 3 ? 'free' : 'team',
    };
    const base = { uuid: uuidFrom(next), distinct_id: user, timestamp: at.toISOString() };
    if (i % 3 === 0) {
      return { ...base, event: '$autocapture', properties: { ...properties, $event_type: 'click', $elements: buttonElements(next) } };
    }
    if (i % 100 === 1) {
      return { ...base, event: 'report exported', properties: { ...properties, report: 'x'.repeat(20_000 + Math.floor(next() * 10_000)) } };
    }
    if (i % 50 === 2) return { ...base, event: '$identify', $set: { email: `${user}@example.com` }, properties };
    return { ...base, event: i % 3 === 1 ? '$pageview' : 'dashboard viewed', properties };
  };
  const indexAt = (t) => Math.min(count, Math.max(0, Math.ceil((t - from) / step)));
  return {
    count,
    event,
    /** The times of the first and the last event (`now` when there are none). */
    bounds: (now) => (count ? [Date.parse(event(0).timestamp), Date.parse(event(count - 1).timestamp)] : [now, now]),
    /** Rows `{event, id, storedAt}` with from <= timestamp < to, in the order they were
     * stored, from `offset`, at most `limit`. */
    page: (a, b, offset, limit) => {
      const [first, end] = [indexAt(a), indexAt(b)];
      const rows = [];
      for (let i = first + offset; i < Math.min(end, first + offset + limit); i++) rows.push({ event: event(i), id: i, storedAt: Date.parse(event(i).timestamp) });
      return rows;
    },
    insert: () => {
      throw new Error('the corpus cannot take more events');
    },
  };
}

/**
 * An array of events as a source like `corpus`: a table of rows by time, each with an
 * id in the order it was stored (the given events in time order), so that an event
 * stored later comes after the others of its window, as `ORDER BY id` pages them.
 */
export function arraySource(events) {
  const rows = [...events].sort((a, b) => storedTime(a) - storedTime(b)).map((event, id) => ({ event, id, time: storedTime(event), storedAt: storedTime(event) }));
  const firstAtOrAfter = (t) => {
    let lo = 0;
    let hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (rows[mid].time < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  let nextId = rows.length;
  return {
    get count() {
      return rows.length;
    },
    event: (i) => rows[i].event,
    bounds: (now) => (rows.length ? [rows[0].time, rows[rows.length - 1].time] : [now, now]),
    page: (a, b, offset, limit) => {
      const window = rows.slice(firstAtOrAfter(a), firstAtOrAfter(b));
      if (window.some((row, i) => i > 0 && row.id < window[i - 1].id)) window.sort((x, y) => x.id - y.id);
      return window.slice(offset, offset + limit);
    },
    /** Stores an event at `storedAt` (ms); it gets the next id. */
    insert: (event, storedAt = storedTime(event)) => {
      const row = { event, id: nextId++, time: storedTime(event), storedAt };
      rows.splice(firstAtOrAfter(row.time + 1), 0, row);
    },
  };
}
