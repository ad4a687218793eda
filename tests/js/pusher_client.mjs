// pusher-js 8 against ringmaster-realtime: connect, authorize a private channel through
// /broadcasting/auth with a bearer token, receive an event published by the hub, be refused
// another user's channel, exercise the signed HTTP API (pusher server SDK, with socket_id
// exclusion), and come back after a 4200 close with the channel resubscribed.
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import { settings, step, fail, deadline, done, once } from './harness.mjs';

const s = settings();
deadline(30000);

const pusher = new Pusher(s.key, {
  wsHost: s.host,
  wsPort: s.port,
  wssPort: s.port,
  forceTLS: false,
  enabledTransports: ['ws'],
  cluster: 'mt1',
  channelAuthorization: {
    endpoint: s.authEndpoint,
    transport: 'ajax',
    headers: { Authorization: `Bearer ${s.token}` },
  },
});
pusher.connection.bind('error', (err) => step('connection_error', { error: JSON.stringify(err) }));

const own = pusher.subscribe(`private-user.${s.userId}`);
own.bind('pusher:subscription_error', (err) => fail(`own channel refused: ${JSON.stringify(err)}`));

const subscriptions = [];
own.bind('pusher:subscription_succeeded', () => {
  subscriptions.push(pusher.connection.socket_id);
  step(subscriptions.length === 1 ? 'subscribed' : 'resubscribed', { socket_id: pusher.connection.socket_id });
});
const events = [];
let wake = null;
own.bind_global((name, data) => {
  if (name.startsWith('pusher')) return;
  events.push({ name, data });
  wake?.();
});
async function nextEvent() {
  while (events.length === 0) await new Promise((resolve) => (wake = resolve));
  wake = null;
  return events.shift();
}

try {
  const first = await nextEvent();
  step('received', { event: first.name, data: first.data });

  const foreign = pusher.subscribe(`private-user.${s.foreignUserId}`);
  const refusal = await once((resolve) => {
    foreign.bind('pusher:subscription_succeeded', () => fail('subscribed to a foreign channel'));
    foreign.bind('pusher:subscription_error', resolve);
  });
  step('foreign_rejected', { status: refusal.status });
  pusher.unsubscribe(`private-user.${s.foreignUserId}`);

  const server = new PusherServer({
    appId: s.appId, key: s.key, secret: s.secret, host: s.host, port: String(s.port), useTLS: false,
  });
  const channel = `private-user.${s.userId}`;
  await server.trigger(channel, 'excluded', { n: 1 }, { socket_id: pusher.connection.socket_id });
  await server.trigger(channel, 'sdk_event', { n: 2 });
  const viaSdk = await nextEvent();
  if (viaSdk.name !== 'sdk_event') fail(`expected sdk_event first, got ${viaSdk.name}`);
  step('sdk_received', { data: viaSdk.data });

  step('ready_for_reconnect');
  const again = await nextEvent();
  step('received_after_reconnect', { event: again.name, data: again.data, subscriptions: subscriptions.length });
  pusher.disconnect();
  done();
} catch (err) {
  fail(err?.stack || err);
}
