// The built plugin file in the host-faithful harness under whichever Node runs this
// script: PostHog's plugin servers ran Node 14 to 20 (scripts/node-versions.sh runs
// it under each). Plain assertions, no test runner: node:test came with Node 18.
import { strict as assert } from 'node:assert';
import { messages, migration } from '../harness/scenario.mjs';
import { asLive, sampleEvents } from '../harness/source-events.mjs';

const { destination, host, sourceEvents, clock } = await migration({ history: 30, config: { batchSize: '7' } });
try {
  await host.load();
  await host.runUntilExported();
  const live = sampleEvents({ count: 5, from: clock.now + 1000, to: clock.now + 2000, seed: 41 });
  for (const event of live) await host.ingest(asLive(event, clock.now));
  await host.teardown();
  const received = destination.events().map(({ event }) => event.uuid);
  assert.deepEqual(new Set(received), new Set([...sourceEvents, ...live].map((e) => e.uuid)), messages(host));
  assert.equal(received.length, sourceEvents.length + live.length, 'an event arrived twice');
  assert.deepEqual(host.hostErrors, []);
  console.log(`Node ${process.versions.node}: ${received.length} events migrated, each once.`);
} finally {
  await destination.close();
}
