// The honest alternative: the core's rules written in plain JavaScript, for the
// benchmark to race against. It is not used by the app.
import { createHash } from 'node:crypto';

const DROPPED = new Set(['token', '$token', '$$is_historical_export_event', '$$historical_export_timestamp', '$$historical_export_source_db']);
const RENAMES = [['text', '$el_text'], ['attr_class', 'attr__class'], ['attr_id', 'attr__id'], ['href', 'attr__href']];
const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const MAX_EVENT_BYTES = 900 * 1024;
const NAMESPACE = Buffer.from('6d69677261746f722d333030302d7631', 'hex');

function time(value) {
  if (typeof value === 'string') {
    const t = Date.parse(/[zZ]|[+-]\d\d(:?\d\d)?$/.test(value) ? value : `${value.replace(' ', 'T')}Z`);
    return Number.isNaN(t) ? undefined : t;
  }
  if (typeof value === 'number') return Math.abs(value) < 1e11 ? Math.round(value * 1000) : Math.round(value);
  return undefined;
}

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

function uuidV5(name) {
  const hash = createHash('sha1').update(NAMESPACE).update(name).digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** One event as capture will take it (JSON), or `null` when it must be rejected. */
export function transform(event, now) {
  if (!event || typeof event !== 'object' || Array.isArray(event)) return null;
  if (typeof event.event !== 'string' || !event.event) return null;
  const source = event.properties ?? {};
  if (typeof source !== 'object' || Array.isArray(source)) return null;
  let distinctId = event.distinct_id ?? source.distinct_id;
  if (typeof distinctId === 'number') distinctId = String(distinctId);
  if (typeof distinctId !== 'string' || !distinctId.trim()) return null;
  const received = time(event.now);
  let at = time(event.timestamp);
  if (at === undefined && received !== undefined && typeof event.offset === 'number') at = received - event.offset;
  if (at === undefined) at = time(source.$time) ?? received;
  const stamped = at ?? now;
  let uuid = typeof event.uuid === 'string' && UUID.test(event.uuid.trim()) ? event.uuid.trim().toLowerCase() : undefined;
  if (uuid && !uuid.includes('-')) uuid = `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`;
  if (!uuid) {
    const stable = Object.fromEntries(Object.entries(source).filter(([k]) => !k.startsWith('$$')));
    uuid = uuidV5(canonical([event.event, distinctId, at === undefined ? null : new Date(at).toISOString(), stable, event.$set ?? null, event.$set_once ?? null]));
  }
  const properties = {};
  for (const key in source) if (!DROPPED.has(key)) properties[key] = source[key];
  if (Array.isArray(event.elements) && event.elements.length && !('$elements' in properties)) properties.$elements = event.elements;
  if (event.ip && !('$ip' in properties)) properties.$ip = event.ip;
  if (Array.isArray(properties.$elements)) {
    properties.$elements = properties.$elements.map((el) => {
      if (!el || typeof el !== 'object') return el;
      const out = { ...el };
      for (const [from, to] of RENAMES) {
        if (from in out) {
          if (!(to in out)) out[to] = out[from];
          delete out[from];
        }
      }
      if (out.attributes && typeof out.attributes === 'object') for (const k in out.attributes) if (!(k in out)) out[k] = out.attributes[k];
      delete out.attributes;
      return out;
    });
  }
  properties.$geoip_disable = true;
  const out = { event: event.event, distinct_id: distinctId, properties, timestamp: new Date(stamped).toISOString(), uuid };
  if (event.$set && typeof event.$set === 'object') out.$set = event.$set;
  if (event.$set_once && typeof event.$set_once === 'object') out.$set_once = event.$set_once;
  const json = JSON.stringify(out);
  return Buffer.byteLength(json) > MAX_EVENT_BYTES ? null : { uuid, json };
}

/** Request bodies for a page of events, bounded like the core's. */
export function batches(events, { apiKey, maxEvents, maxBytes, now }) {
  const head = `{"api_key":${JSON.stringify(apiKey)},"historical_migration":true,"batch":[`;
  const out = [];
  let parts = [];
  let bytes = head.length + 2;
  for (const event of events) {
    const prepared = transform(event, now);
    if (!prepared) continue;
    if (parts.length && (parts.length >= maxEvents || bytes + prepared.json.length + 1 > maxBytes)) {
      out.push(`${head}${parts.join(',')}]}`);
      parts = [];
      bytes = head.length + 2;
    }
    parts.push(prepared.json);
    bytes += prepared.json.length + 1;
  }
  if (parts.length) out.push(`${head}${parts.join(',')}]}`);
  return out;
}
