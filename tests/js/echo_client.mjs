// laravel-echo 2 configured as for Laravel Reverb: private channel through /broadcasting/auth
// with a bearer token, a call_ended listener, a presence channel, and refusal of another user's
// channel surfacing through Echo's .error().
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { settings, step, fail, deadline, done, once } from './harness.mjs';

const s = settings();
deadline(30000);

const echo = new Echo({
  broadcaster: process.env.RM_BROADCASTER || 'reverb',
  key: s.key,
  // pusher-js demands a cluster; with wsHost set it is unused (the reverb broadcaster blanks it).
  cluster: 'mt1',
  wsHost: s.host,
  wsPort: s.port,
  wssPort: s.port,
  forceTLS: false,
  enabledTransports: ['ws'],
  authEndpoint: s.authEndpoint,
  bearerToken: s.token,
  Pusher,
});

try {
  const received = new Promise((resolve) => {
    echo
      .private(`user.${s.userId}`)
      .error((err) => fail(`own channel refused: ${JSON.stringify(err)}`))
      .listen('.call_ended', resolve)
      .subscribed(() => step('subscribed', { socket_id: echo.socketId() }));
  });
  const payload = await received;
  step('received', { event: 'call_ended', data: payload });

  const here = await once((resolve) => echo.join(`user.${s.userId}`).here(resolve));
  step('presence_here', { members: here });

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
