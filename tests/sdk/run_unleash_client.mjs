// The phased run (tests/sdk/plan.py) with the official Node SDK, unleash-client, as an app
// would use it. Run by tests/sdk/node_sdk.py, which passes one JSON document in
// IMPACTAGENT_SDK_RUN: { install, url, appName, token, intervalMs, windowTimeoutMs, plan,
// names }. `install` is the directory holding node_modules/unleash-client (the e2e stack's
// npm cache): the SDK is required from there, not from next to this file.
//
// The SDK sends on its own timer. A window ends when two more metrics bodies have reached
// the front server (GET /_posts), or after windowTimeoutMs: the first body may have been
// collected while the window was being recorded, the second was collected after it. Phase C
// records, then calls destroyWithFlush() at once (the SDK's flush on shutdown; destroy()
// alone sends nothing). The whole run is bounded; the process exits when it is done.
import { createRequire } from 'node:module';
import path from 'node:path';

const run = JSON.parse(process.env.IMPACTAGENT_SDK_RUN);
const require = createRequire(path.join(run.install, 'package.json'));
const { Unleash } = require('unleash-client');
const names = run.names;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function metricsPosts() {
    const answer = await fetch(`${run.url}/_posts`);
    return (await answer.json()).metrics;
}

async function startPhase(phase) {
    await fetch(`${run.url}/_phase/${phase}`, { method: 'PUT' });
}

async function waitForPosts(count) {
    const deadline = Date.now() + run.windowTimeoutMs;
    while (Date.now() < deadline) {
        if ((await metricsPosts()) >= count) {
            return true;
        }
        await sleep(20);
    }
    return false;
}

function record(unleash, window) {
    for (let i = 0; i < window.on; i++) unleash.isEnabled(names.on);
    for (let i = 0; i < window.off; i++) unleash.isEnabled(names.off);
    for (let i = 0; i < window.colour; i++) unleash.getVariant(names.colour);
    const metrics = unleash.impactMetrics;
    if (window.jobs) metrics.incrementCounter(names.jobs, window.jobs);
    if (window.checkouts) {
        // The flag context is deprecated in 6.x but still sent: the counter "with flag labels".
        metrics.incrementCounter(names.checkouts, window.checkouts,
            { flagNames: [names.colour], context: {} });
    }
    if (window.queue !== null) metrics.updateGauge(names.queue, window.queue);
    for (const value of window.latencies) metrics.observeHistogram(names.latency, value);
}

const unleash = new Unleash({
    url: `${run.url}/api`,
    appName: run.appName,
    instanceId: `${run.appName}-1`,
    environment: 'development',
    refreshInterval: 60000,
    metricsInterval: run.intervalMs,
    metricsJitter: 0,
    timeout: 5000,
    customHeaders: { Authorization: run.token },
    disableAutoStart: false,
    skipInstanceCountWarning: true,
    // No backup file next to the app: the flags come from the front server alone.
    storageProvider: { set: async () => {}, get: async () => undefined },
});
const warnings = [];
unleash.on('warn', (message) => warnings.push(String(message)));
unleash.on('error', (error) => warnings.push(`error: ${error}`));

const synchronized = new Promise((resolve) => unleash.once('synchronized', resolve));
const ready = await Promise.race([synchronized.then(() => true),
    sleep(run.windowTimeoutMs).then(() => false)]);
if (!ready) {
    // Evaluated before the flags arrive, every flag would count as off: fail loudly instead.
    process.stderr.write(`no flags from ${run.url} within ${run.windowTimeoutMs} ms: ${warnings}\n`);
    process.exit(2);
}

const metrics = unleash.impactMetrics;
metrics.defineCounter(names.jobs, 'Jobs done');
metrics.defineCounter(names.checkouts, "Checkouts, by the colour flag's variant");
metrics.defineGauge(names.queue, 'Jobs waiting');
metrics.defineHistogram(names.latency, 'Job latency', names.boundaries);

for (const window of run.plan) {
    await startPhase(window.phase);
    record(unleash, window);
    if (window.phase !== 'C') {
        await waitForPosts((await metricsPosts()) + 2);
    }
}
await unleash.destroyWithFlush();
process.stdout.write(JSON.stringify({ warnings }) + '\n');
process.exit(0);
