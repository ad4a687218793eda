// Browser tests of the web console: Debian's chromium driven by playwright-core against a real
// `ringmaster serve` in sandbox mode (scripts/test-web starts it and sets RM_URL and
// RM_ADMIN_TOKEN). The other devices of the user are played over HTTP: the emulator answers
// their legs, and they report their canonical transitions like the phone apps do.
// A screenshot of every step goes to RM_ARTIFACTS.
import { chromium } from 'playwright-core';
import { createHash, createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const BASE = process.env.RM_URL ?? 'http://127.0.0.1:8080';
const ADMIN = process.env.RM_ADMIN_TOKEN;
const ARTIFACTS = process.env.RM_ARTIFACTS ?? join(tmpdir(), 'ringmaster-web-screenshots');
const CHROMIUM = process.env.RM_CHROMIUM ?? '/usr/bin/chromium';
const WAIT = 15_000;
const PUSHER = { appId: process.env.RM_PUSHER_APP_ID ?? 'ringmaster', key: process.env.RM_PUSHER_KEY ?? 'ringmaster-key', secret: process.env.RM_PUSHER_SECRET };
assert.ok(ADMIN, 'RM_ADMIN_TOKEN must be set');
assert.ok(PUSHER.secret, 'RM_PUSHER_SECRET must be set');
mkdirSync(ARTIFACTS, { recursive: true });

async function http(method, url, token, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${url}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function eventually(what, probe, ms = WAIT) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

const sandbox = await http('GET', `${BASE}/api/admin/sandbox`, ADMIN);
const emulator = sandbox.emulator_url;
const suffix = String(Date.now()).slice(-7);

async function makeUser(name, number, platforms) {
  const user = await http('POST', `${BASE}/api/admin/users`, ADMIN, { name, numbers: [number] });
  const devices = {};
  for (const platform of platforms) {
    const sip_uri = `sip:${name.toLowerCase()}-${platform}-${suffix}@web-test.local`;
    const d = await http('POST', `${BASE}/api/admin/users/${user.id}/devices`, ADMIN, { platform, sip_uri });
    devices[platform] = { id: d.id, token: d.token, sip_uri, seq: 0 };
  }
  return { id: user.id, number, devices };
}

const ada = await makeUser('Ada', `+1555${suffix}`, ['ios', 'android', 'web']);
const bob = await makeUser('Bob', `+1556${suffix}`, ['web']);
const CALLER = '+15557654321';

async function legs(callId) {
  const { calls } = await http('GET', `${emulator}/calls`);
  return calls.filter((c) => c.call_session_id === callId);
}

async function placeCall(user) {
  const call = await http('POST', `${emulator}/calls`, null, { from: CALLER, to: user.number });
  return { id: call.call_session_id, caller: call.call_control_id };
}

/** Waits until every device of `user` has a ringing leg of the call; returns them by platform. */
async function ringing(callId, user) {
  return eventually('every device rings', async () => {
    const all = await legs(callId);
    const byPlatform = {};
    for (const [platform, d] of Object.entries(user.devices)) {
      const leg = all.find((l) => l.to === d.sip_uri && String(l.state).toLowerCase() === 'ringing');
      if (!leg) return null;
      byPlatform[platform] = leg.call_control_id;
    }
    return byPlatform;
  });
}

/** The device reports one canonical transition, as the phone app's agent does. */
async function report(device, callId, from, to) {
  device.seq += 1;
  await http('POST', `${BASE}/api/voip/calls/${callId}/events`, device.token, { seq: device.seq, from, to });
}

/** Publishes an event through the Pusher HTTP API (signed as a Pusher server SDK does): how the
 *  test feeds the page an event the coordinator itself would never send. */
async function publish(channel, name, data) {
  const body = JSON.stringify({ name, channels: [channel], data: JSON.stringify(data) });
  const path = `/apps/${PUSHER.appId}/events`;
  const params = new URLSearchParams({
    auth_key: PUSHER.key,
    auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    body_md5: createHash('md5').update(body).digest('hex'),
  });
  params.sort();
  const query = decodeURIComponent(params.toString());
  const signature = createHmac('sha256', PUSHER.secret).update(`POST\n${path}\n${query}`).digest('hex');
  const resp = await fetch(`${BASE}${path}?${query}&auth_signature=${signature}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body,
  });
  assert.equal(resp.status, 200, `publish: ${await resp.text()}`);
}

// Playwright gives the browser a fresh temporary profile (--user-data-dir) of its own and
// removes it on close; it refuses one passed in `args`.
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
}

const results = [];
async function scenario(name, body) {
  const started = Date.now();
  await body();
  results.push({ name, ms: Date.now() - started });
  console.log(`ok - ${name} (${Date.now() - started} ms)`);
}

async function openPage(token) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  const page = await context.newPage();
  const problems = [];
  // Uncaught exceptions only: a page that is offline on purpose logs failed requests.
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(`${BASE}/?device_token=${encodeURIComponent(token)}`);
  return { context, page, problems };
}

const byTestId = (page, id) => page.locator(`[data-testid=${id}]`);

try {
  const a = await openPage(ada.devices.web.token);
  const b = await openPage(bob.devices.web.token);
  const { page } = a;

  // Bob's page must never show Ada's calls: checked after every step.
  async function bobSeesNothing() {
    assert.equal(await byTestId(b.page, 'incoming-call').count(), 0, "Bob's page shows an incoming call");
    assert.equal(await byTestId(b.page, 'other-device-call').count(), 0, "Bob's page shows a badge");
    assert.equal(await byTestId(b.page, 'history-row').count(), 0, "Bob's page shows history");
  }

  await scenario('sign-in by link: the token leaves the address bar and the channel connects', async () => {
    await byTestId(page, 'connection').filter({ hasText: /^connected$/ }).waitFor({ timeout: WAIT });
    assert.ok(!page.url().includes('device_token'), `token still in ${page.url()}`);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('rm.device_token')), ada.devices.web.token);
    await byTestId(b.page, 'connection').filter({ hasText: /^connected$/ }).waitFor({ timeout: WAIT });
    await screenshot(page, 'signed-in');
  });

  await scenario('the form signs in too', async () => {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(`${BASE}/`);
    await byTestId(p, 'token-input').fill(bob.devices.web.token);
    await byTestId(p, 'sign-in').click();
    await byTestId(p, 'connection').filter({ hasText: /^connected$/ }).waitFor({ timeout: WAIT });
    await screenshot(p, 'form-sign-in');
    await ctx.close();
  });

  let first;
  await scenario('a sandbox call rings three devices and the page shows the card', async () => {
    first = await placeCall(ada);
    first.legs = await ringing(first.id, ada);
    assert.equal(Object.keys(first.legs).length, 3);
    const card = page.locator(`[data-testid=incoming-call][data-call-session-id="${first.id}"]`);
    await card.waitFor({ timeout: WAIT });
    assert.equal(await card.locator('[data-testid=caller]').textContent(), CALLER);
    for (const id of ['answer', 'decline', 'ignore']) assert.ok(await card.locator(`[data-testid=${id}]`).isEnabled());
    await screenshot(page, 'incoming-card');
    await bobSeesNothing();
  });

  await scenario('the iPhone answers: the card says so and the badge appears', async () => {
    await http('POST', `${emulator}/calls/${first.legs.ios}/answer`, null, {});
    const card = page.locator(`[data-testid=incoming-call][data-call-session-id="${first.id}"]`);
    await card.filter({ hasText: 'Answered on iPhone' }).waitFor({ timeout: WAIT });
    await screenshot(page, 'answered-on-iphone');
    const badge = byTestId(page, 'other-device-call');
    await badge.waitFor({ timeout: WAIT });
    assert.equal(await byTestId(page, 'badge-device').textContent(), 'iPhone');
    assert.equal(await byTestId(page, 'badge-state').textContent(), 'active');
    await report(ada.devices.ios, first.id, 'RINGING_INBOUND', 'ACTIVE');
    await card.waitFor({ state: 'detached', timeout: WAIT });
    await screenshot(page, 'badge-active');
    await bobSeesNothing();
  });

  await scenario('hold and resume on the iPhone update the badge', async () => {
    await report(ada.devices.ios, first.id, 'ACTIVE', 'ON_HOLD');
    await byTestId(page, 'badge-state').filter({ hasText: /^on hold$/ }).waitFor({ timeout: WAIT });
    await screenshot(page, 'badge-on-hold');
    await report(ada.devices.ios, first.id, 'ON_HOLD', 'ACTIVE');
    await byTestId(page, 'badge-state').filter({ hasText: /^active$/ }).waitFor({ timeout: WAIT });
    assert.match(await byTestId(page, 'badge-elapsed').textContent(), /^\d+:\d\d$/);
  });

  await scenario('an illegal jump is logged and the page resynchronises over HTTP', async () => {
    const { version } = await http('GET', `${BASE}/api/voip/call-status/${first.id}`, ada.devices.ios.token);
    await publish(`private-user.${ada.id}`, 'call_state_changed', {
      call_session_id: first.id, device_id: ada.devices.ios.id, platform: 'ios', state: 'RINGING_INBOUND', version,
    });
    await byTestId(page, 'sync-log').filter({ hasText: 'illegal jump ACTIVE -> RINGING_INBOUND' }).waitFor({ timeout: WAIT });
    await byTestId(page, 'sync-log').filter({ hasText: 'synchronised (illegal jump)' }).waitFor({ timeout: WAIT });
    assert.equal(await byTestId(page, 'badge-state').textContent(), 'active');
    await screenshot(page, 'illegal-jump-resynchronised');
  });

  await scenario('dialling while on a call elsewhere is refused with the collision message', async () => {
    await byTestId(page, 'dial-input').fill('+15559990000');
    await byTestId(page, 'dial').click();
    const collision = byTestId(page, 'collision');
    await collision.waitFor({ state: 'visible', timeout: WAIT });
    assert.match(await collision.textContent(), /already on a call on iPhone/);
    await screenshot(page, 'collision');
  });

  await scenario('the call ends and the history shows it', async () => {
    await http('POST', `${emulator}/calls/${first.caller}/hangup`, null, {});
    await eventually('the call is over', async () => {
      const s = await http('GET', `${BASE}/api/voip/call-status/${first.id}`, ada.devices.ios.token);
      return s.status === 'ended';
    });
    // The backend publishes the iPhone's ENDED itself (a report after the end is refused).
    await byTestId(page, 'other-device-call').waitFor({ state: 'detached', timeout: WAIT });
    const row = page.locator(`[data-testid=history-row][data-call-session-id="${first.id}"]`);
    await eventually('the history row is final', async () => (await row.getAttribute('data-status')) === 'answered' && (await row.locator('[data-testid=history-duration]').textContent()) !== '');
    assert.equal(await row.locator('[data-testid=history-device]').textContent(), 'iPhone');
    await screenshot(page, 'history');
    await row.click();
    const timeline = byTestId(page, 'timeline');
    await timeline.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await timeline.locator('[data-testid=timeline-leg]').count() >= 3, true);
    assert.ok((await timeline.textContent()).includes('RINGING_INBOUND → ACTIVE'));
    await screenshot(page, 'timeline');
    await bobSeesNothing();
  });

  await scenario('decline on the page ends every leg', async () => {
    const call = await placeCall(ada);
    const ringLegs = await ringing(call.id, ada);
    const card = page.locator(`[data-testid=incoming-call][data-call-session-id="${call.id}"]`);
    await card.waitFor({ timeout: WAIT });
    await card.locator('[data-testid=decline]').click();
    await card.filter({ hasText: 'Declined' }).waitFor({ timeout: WAIT });
    await screenshot(page, 'declined-here');
    await eventually('every leg is over', async () => {
      const all = await legs(call.id);
      return Object.values(ringLegs).every((ccid) => all.some((l) => l.call_control_id === ccid && String(l.state).toLowerCase() === 'ended'));
    });
    const phone = await http('GET', `${BASE}/api/voip/call-status/${call.id}`, ada.devices.ios.token);
    assert.equal(phone.status, 'declined_elsewhere');
    const row = page.locator(`[data-testid=history-row][data-call-session-id="${call.id}"]`);
    await eventually('declined in the history', async () => (await row.getAttribute('data-status')) === 'declined');
    await bobSeesNothing();
  });

  await scenario('offline during a call: the page recovers the right state over HTTP', async () => {
    const call = await placeCall(ada);
    const ringLegs = await ringing(call.id, ada);
    const card = page.locator(`[data-testid=incoming-call][data-call-session-id="${call.id}"]`);
    await card.waitFor({ timeout: WAIT });
    await a.context.setOffline(true);
    await byTestId(page, 'connection').filter({ hasText: /^offline$/ }).waitFor({ timeout: WAIT });
    // While the page is away the Android phone answers and holds the call.
    await http('POST', `${emulator}/calls/${ringLegs.android}/answer`, null, {});
    await eventually('the call is answered', async () => {
      const s = await http('GET', `${BASE}/api/voip/call-status/${call.id}`, ada.devices.ios.token);
      return s.status === 'answered_elsewhere';
    });
    await report(ada.devices.android, call.id, 'RINGING_INBOUND', 'ACTIVE');
    await report(ada.devices.android, call.id, 'ACTIVE', 'ON_HOLD');
    await screenshot(page, 'offline');
    assert.equal(await byTestId(page, 'other-device-call').count(), 0, 'the badge cannot know yet');
    await a.context.setOffline(false);
    await byTestId(page, 'connection').filter({ hasText: /^connected$/ }).waitFor({ timeout: WAIT });
    await card.filter({ hasText: 'Answered on Android' }).waitFor({ timeout: WAIT });
    await byTestId(page, 'badge-state').filter({ hasText: /^on hold$/ }).waitFor({ timeout: WAIT });
    assert.equal(await byTestId(page, 'badge-device').textContent(), 'Android');
    await screenshot(page, 'recovered');
    // The backend publishes the phone's ENDED itself (a report after the end is refused).
    await http('POST', `${emulator}/calls/${call.caller}/hangup`, null, {});
    await byTestId(page, 'other-device-call').waitFor({ state: 'detached', timeout: WAIT });
    await bobSeesNothing();
    await screenshot(b.page, 'second-user');
  });

  await scenario('sandbox: the page simulates a call and answers it itself', async () => {
    await byTestId(page, 'simulate-call').click();
    const card = page.locator('[data-testid=incoming-call]').filter({ hasText: 'Incoming call' });
    await card.waitFor({ timeout: WAIT });
    const id = await card.getAttribute('data-call-session-id');
    await ringing(id, ada);
    await card.locator('[data-testid=answer]').click();
    await page.locator(`[data-testid=incoming-call][data-call-session-id="${id}"]`).filter({ hasText: 'Answered here' }).waitFor({ timeout: WAIT });
    const status = await http('GET', `${BASE}/api/voip/call-status/${id}`, ada.devices.ios.token);
    assert.equal(status.status, 'answered_elsewhere');
    assert.equal(status.device_id, ada.devices.web.id);
    await screenshot(page, 'answered-here');
    const caller = (await legs(id)).find((l) => l.to === ada.number);
    await http('POST', `${emulator}/calls/${caller.call_control_id}/hangup`, null, {});
    await eventually('the call is over', async () => {
      const s = await http('GET', `${BASE}/api/voip/call-status/${id}`, ada.devices.web.token);
      return s.status === 'ended';
    });
  });

  await scenario('the operator view shows live calls, dismissal latency and the state machine', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 1300 } });
    const p = await ctx.newPage();
    await p.goto(`${BASE}/operator?admin_token=${encodeURIComponent(ADMIN)}`);
    await byTestId(p, 'state-diagram').waitFor({ timeout: WAIT });
    assert.equal(await p.locator('[data-testid=state-diagram] g[data-state]').count(), 15);
    assert.ok(!p.url().includes('admin_token'));
    // The web page reported its dismissals (channel websocket) in the scenarios above.
    const ws = p.locator('[data-testid=latency-chart] g[data-channel=websocket]');
    await ws.waitFor({ timeout: WAIT });
    assert.ok(Number(await ws.getAttribute('data-count')) >= 1, 'no websocket dismissal counted');
    const call = await placeCall(ada);
    await ringing(call.id, ada);
    await p.locator(`[data-testid=ringing-calls-row][data-call-session-id="${call.id}"]`).waitFor({ timeout: WAIT });
    await screenshot(p, 'operator');
    await http('POST', `${emulator}/calls/${call.caller}/hangup`, null, {});
    await page.locator(`[data-testid=incoming-call][data-call-session-id="${call.id}"]`).filter({ hasText: 'Caller hung up' }).waitFor({ timeout: WAIT });
    await screenshot(page, 'caller-hung-up');
    await p.locator(`[data-testid=ringing-calls-row][data-call-session-id="${call.id}"]`).waitFor({ state: 'detached', timeout: WAIT });
    await ctx.close();
  });

  for (const { page: p, problems } of [a, b]) {
    assert.deepEqual(problems, [], `page errors on ${p.url()}`);
  }
  console.log(`all ${results.length} browser scenarios passed; screenshots in ${ARTIFACTS}`);
} finally {
  await browser.close();
}
