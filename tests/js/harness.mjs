// Shared plumbing for the client scripts. The Rust test that launches a script reads one JSON
// object per stdout line ("steps") and reacts to some of them (e.g. publishes an event once the
// script says it is subscribed). Any failure prints {"step":"error"} and exits non-zero.

export function env(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is required`);
  return value;
}

export function settings() {
  const host = process.env.RM_WS_HOST || '127.0.0.1';
  const port = Number(env('RM_WS_PORT'));
  return {
    host,
    port,
    key: env('RM_KEY'),
    appId: env('RM_APP_ID'),
    secret: env('RM_SECRET'),
    token: env('RM_TOKEN'),
    userId: env('RM_USER_ID'),
    foreignUserId: env('RM_FOREIGN_USER_ID'),
    authEndpoint: `http://${host}:${port}/broadcasting/auth`,
  };
}

export function step(name, fields = {}) {
  process.stdout.write(JSON.stringify({ step: name, ...fields }) + '\n');
}

export function fail(message) {
  step('error', { message: String(message) });
  process.exit(1);
}

// The Rust side bounds the run too; this keeps a stuck script from lingering on its own.
export function deadline(ms) {
  const timer = setTimeout(() => fail(`no result within ${ms} ms`), ms);
  timer.unref?.();
}

export function done() {
  step('done');
  // pusher-js keeps timers alive; leave once the result is printed.
  setTimeout(() => process.exit(0), 50);
}

// Resolves the next time `register(resolve)` fires.
export function once(register) {
  return new Promise((resolve) => register(resolve));
}
