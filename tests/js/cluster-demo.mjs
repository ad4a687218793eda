// scripts/cluster-demo's browser stand-in: pusher-js connected to node B with a web device's
// token, on the user's private channel. It prints one JSON step per line: `subscribed` (the
// script then places the call through node A), every event of the call, and finally
// `dismissed` once `call_ended` says another device answered. Anything else fails (exit 1).
import Pusher from 'pusher-js';
import { env, step, fail, deadline, done } from './harness.mjs';

const host = process.env.RM_WS_HOST || '127.0.0.1';
const port = Number(env('RM_WS_PORT'));
deadline(Number(process.env.RM_DEADLINE_MS || 30000));

const pusher = new Pusher(env('RM_KEY'), {
  wsHost: host,
  wsPort: port,
  forceTLS: false,
  enabledTransports: ['ws'],
  cluster: 'ringmaster',
  channelAuthorization: {
    endpoint: `http://${host}:${port}/broadcasting/auth`,
    headers: { Authorization: `Bearer ${env('RM_TOKEN')}` },
  },
});

const channel = pusher.subscribe(`private-user.${env('RM_USER_ID')}`);
channel.bind('pusher:subscription_error', (err) => fail(`subscription refused: ${JSON.stringify(err)}`));
channel.bind('pusher:subscription_succeeded', () => step('subscribed', { socket_id: pusher.connection.socket_id }));
channel.bind('incoming_call', (data) => step('incoming_call', { data }));
channel.bind('call_state_changed', (data) => step('call_state_changed', { data }));
channel.bind('call_ended', (data) => {
  step('call_ended', { data });
  if (data.reason !== 'answered_elsewhere') fail(`dismissed with ${data.reason}, not answered_elsewhere`);
  step('dismissed', { reason: data.reason, answered_by: data.device_id });
  pusher.disconnect();
  done();
});
