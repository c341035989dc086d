// Starts the pinned unleash-server for the end-to-end tests (see stack.py, which runs this).
//
// Everything comes from one JSON document in IMPACTAGENT_UNLEASH_CONFIG, so no secret is ever
// on a command line (where `ps` would show it). The server module is imported by path because
// it is installed in a cache directory shared between clones, not next to this file.
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.env.IMPACTAGENT_UNLEASH_CONFIG);
const { start } = await import(pathToFileURL(config.serverEntry).href);

const token = (secret, type, project, environment) => ({
    secret,
    type,
    projects: [project],
    environment,
    tokenName: `impactagent-e2e-${type}`,
});

await start({
    db: {
        host: '127.0.0.1',
        port: config.db.port,
        user: config.db.user,
        password: config.db.password,
        database: config.db.database,
        ssl: false,
    },
    server: { host: '127.0.0.1', port: config.port },
    authentication: {
        initApiTokens: [
            token(config.tokens.admin, 'admin', '*', '*'),
            token(config.tokens.backend, 'backend', 'default', 'development'),
            token(config.tokens.frontend, 'frontend', 'default', 'development'),
        ],
    },
    versionCheck: { enable: false },
    telemetry: false,
    logLevel: config.logLevel ?? 'warn',
});

// stack.py waits for this line (and for /health) before it hands the server to the tests.
console.log(`impactagent-e2e: unleash-server listening on 127.0.0.1:${config.port}`);

// SIGTERM and SIGINT stop it gracefully: unleash-server registers those handlers itself.
