// The "done when": laravel-echo configured as for Laravel Reverb (host, port, key,
// authEndpoint with a device bearer token) against the real coordinator. The Rust test
// crates/ringmaster-server/tests/echo.rs places an emulated call once this script is
// subscribed and has another device answer it; the script reports what it received, then
// checks that the user's device cannot join another user's channel.
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { settings, step, fail, deadline, done, once } from './harness.mjs';

const s = settings();
deadline(30000);

const echo = new Echo({
  broadcaster: 'reverb',
  key: s.key,
  wsHost: s.host,
  wsPort: s.port,
  wssPort: s.port,
  forceTLS: false,
  enabledTransports: ['ws', 'wss'],
  authEndpoint: s.authEndpoint,
  bearerToken: s.token,
  Pusher,
});

try {
  const ended = new Promise((resolve) => {
    echo
      .private(`user.${s.userId}`)
      .error((err) => fail(`own channel refused: ${JSON.stringify(err)}`))
      .listen('.incoming_call', (data) => step('incoming_call', { data }))
      .listen('.call_ended', resolve)
      .subscribed(() => step('subscribed', { socket_id: echo.socketId() }));
  });
  step('call_ended', { data: await ended });

  const refusal = await once((resolve) => {
    echo
      .private(`user.${s.foreignUserId}`)
      .subscribed(() => fail('subscribed to a foreign channel'))
      .error(resolve);
  });
  step('foreign_rejected', { status: refusal.status });
  echo.disconnect();
  done();
} catch (err) {
  fail(err?.stack || err);
}
