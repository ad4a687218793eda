// The user's web device: incoming-call card, "on a call on another device" badge, dial box and
// history. State comes from HTTP and from the user's private channel; after every
// (re)subscription the page resynchronises over HTTP, because events sent while the socket was
// down are not replayed.
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { api, ApiError, clock, h, platformLabel, signInForm, takeToken } from './api';
import {
  isCallState,
  isLegal,
  isTerminal,
  type CallEndedEvent,
  type CallState,
  type CallStateChangedEvent,
  type IncomingCallEvent,
} from './generated/machine';

interface Me {
  device_id: string;
  platform: string;
  user_id: string;
  user_name: string;
  numbers: string[];
  channel: string;
  devices: { id: string; platform: string }[];
}

interface WebConfig {
  pusher_key: string | null;
  sandbox: boolean;
}

interface RingingCall {
  call_session_id: string;
  status: string;
  version: number;
  from: string;
  to: string;
}

interface ActiveCall {
  call_session_id: string;
  device_id: string | null;
  started_at: number;
}

interface CallRecord {
  call_session_id: string;
  direction: string;
  from: string;
  to: string;
  status: string;
  answered_device: string | null;
  started_at: number;
  answered_at: number | null;
  ended_at: number | null;
  hangup_cause: string | null;
  recording_url: string | null;
}

interface TimelineEntry {
  at: number;
  source: string;
  device_id: string | null;
  kind: string;
  from_state: string | null;
  to_state: string | null;
  detail: unknown;
}

interface LegRecord {
  call_control_id: string;
  device_id: string | null;
  status: string;
  started_at: number;
  answered_at: number | null;
  ended_at: number | null;
  hangup_cause: string | null;
}

/** States in which a device is on a call (the badge shows them). */
const ON_CALL: readonly CallState[] = [
  'REQUESTING',
  'CONNECTING',
  'RINGING_OUTBOUND',
  'ACTIVE',
  'ON_HOLD',
  'REMOTE_HOLD',
  'RECONNECTING',
  'RENEGOTIATING',
];

/** How the badge names a state. */
function stateLabel(state: CallState): string {
  switch (state) {
    case 'REQUESTING':
    case 'CONNECTING':
    case 'RINGING_OUTBOUND':
      return 'ringing';
    case 'ACTIVE':
      return 'active';
    case 'ON_HOLD':
      return 'on hold';
    case 'REMOTE_HOLD':
      return 'remote hold';
    case 'RECONNECTING':
      return 'reconnecting';
    case 'RENEGOTIATING':
      return 'renegotiating';
    default:
      return state.toLowerCase().replace(/_/g, ' ');
  }
}

/** How long an outcome stays on the card before it goes away. */
const OUTCOME_MS = 4000;
/** While the badge shows, how often the active call is re-read (the server sends no event when a
 *  bridged call ends on the other device's side). */
const ACTIVE_POLL_MS = 5000;
const HISTORY_PAGE = 10;

export function startUser(root: HTMLElement): void {
  const token = takeToken('device_token');
  if (!token) {
    root.replaceChildren(
      h('header', {}, h('h1', {}, 'Ringmaster'), h('span', { 'data-testid': 'connection', class: 'conn' }, 'signed out')),
      signInForm('Device token', (t) => {
        sessionStorage.setItem('rm.device_token', t);
        startUser(root);
      }),
    );
    return;
  }
  new UserApp(root, token).start().catch((err) => {
    sessionStorage.removeItem('rm.device_token');
    root.replaceChildren(
      h('p', { class: 'error', 'data-testid': 'sign-in-error' }, `Sign-in failed: ${err.message}`),
      signInForm('Device token', (t) => {
        sessionStorage.setItem('rm.device_token', t);
        startUser(root);
      }),
    );
  });
}

interface Card {
  el: HTMLElement;
  status: HTMLElement;
  done: boolean;
}

interface Badge {
  callId: string;
  deviceId: string;
  state: CallState;
  since: number;
}

class UserApp {
  private me!: Me;
  private config!: WebConfig;
  private echo: Echo<'reverb'> | null = null;
  private readonly versions = new Map<string, number>();
  /** Last canonical state per `call/device`, to check each reported jump. */
  private readonly states = new Map<string, CallState>();
  private readonly cards = new Map<string, Card>();
  private readonly ignored = new Set<string>();
  private badge: Badge | null = null;
  private historyCursor: string | null = null;
  private syncing: Promise<void> | null = null;
  /** Report sequence numbers: unique per device across page loads (the server drops repeats). */
  private seq = Date.now() * 1000;
  private activePoll: number | null = null;

  private readonly connection = h('span', { 'data-testid': 'connection', class: 'conn' }, 'connecting');
  private readonly cardsEl = h('section', { class: 'cards' });
  private readonly badgeEl = h('section', { class: 'badge-slot' });
  private readonly collision = h('p', { class: 'collision', 'data-testid': 'collision', hidden: '' });
  private readonly historyBody = h('tbody');
  private readonly historyMore = h('button', { 'data-testid': 'history-more', hidden: '' }, 'Older calls');
  private readonly timelineEl = h('section', { class: 'timeline', 'data-testid': 'timeline', hidden: '' });
  private readonly logEl = h('div', { class: 'log', 'data-testid': 'sync-log' });

  constructor(
    private readonly root: HTMLElement,
    private readonly token: string,
  ) {}

  async start(): Promise<void> {
    [this.me, this.config] = await Promise.all([
      api<Me>('/api/voip/me', this.token),
      api<WebConfig>('/api/web/config', null),
    ]);
    this.render();
    await this.resync('start');
    this.connect();
    window.setInterval(() => this.tick(), 1000);
    window.addEventListener('offline', () => {
      this.setConnection('offline');
      this.echo?.connector.pusher.disconnect();
    });
    window.addEventListener('online', () => {
      this.setConnection('connecting');
      this.echo?.connector.pusher.connect();
    });
  }

  private get = <T>(path: string) => api<T>(path, this.token);
  private post = <T>(path: string, body?: unknown) =>
    api<T>(path, this.token, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body) });

  private deviceLabel(id: string | null | undefined): string {
    if (id === this.me.device_id) return 'this device';
    return platformLabel(this.me.devices.find((d) => d.id === id)?.platform);
  }

  private render(): void {
    const dialInput = h('input', { 'data-testid': 'dial-input', type: 'tel', placeholder: '+15551234567' });
    const dialButton = h('button', { 'data-testid': 'dial', type: 'submit' }, 'Call');
    const dial = h('form', { class: 'dial' }, dialInput, dialButton);
    dial.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.dial(dialInput.value.trim());
    });
    const simulate = this.config.sandbox
      ? h('button', { 'data-testid': 'simulate-call', class: 'secondary' }, 'Simulate an incoming call')
      : null;
    simulate?.addEventListener('click', () => {
      this.post('/api/voip/sandbox/incoming-call').catch((e) => this.log(`simulated call failed: ${e.message}`));
    });
    const signOut = h('button', { class: 'link' }, 'Sign out');
    signOut.addEventListener('click', () => {
      sessionStorage.removeItem('rm.device_token');
      location.reload();
    });
    this.historyMore.addEventListener('click', () => void this.loadHistory(false));
    this.root.replaceChildren(
      h(
        'header',
        {},
        h('h1', {}, 'Ringmaster'),
        h('span', { class: 'who', 'data-testid': 'who' }, `${this.me.user_name} · ${platformLabel(this.me.platform)} device · ${this.me.numbers[0] ?? ''}`),
        this.connection,
        signOut,
      ),
      h('main', {}, this.cardsEl, this.badgeEl, h('section', { class: 'panel' }, h('h2', {}, 'Dial'), dial, this.collision, simulate)),
      h(
        'section',
        { class: 'panel', 'data-testid': 'history' },
        h('h2', {}, 'History'),
        h(
          'table',
          {},
          h('thead', {}, h('tr', {}, ...['When', 'Call', 'Status', 'Answered on', 'Duration'].map((t) => h('th', {}, t)))),
          this.historyBody,
        ),
        this.historyMore,
      ),
      this.timelineEl,
      this.logEl,
    );
  }

  /** A warning: to the console and to the page's short log. */
  private log(message: string): void {
    console.warn(`[ringmaster] ${message}`);
    this.note(message);
  }

  /** Adds a line to the page's log, which keeps the last few. */
  private note(message: string): void {
    this.logEl.append(h('span', {}, `${new Date().toLocaleTimeString()} ${message}`));
    while (this.logEl.childElementCount > 6) this.logEl.firstElementChild?.remove();
  }

  private setConnection(text: string): void {
    this.connection.textContent = text;
    this.connection.dataset.state = text;
  }

  private connect(): void {
    const key = this.config.pusher_key;
    if (!key) {
      this.setConnection('no real-time server');
      return;
    }
    const secure = location.protocol === 'https:';
    const port = Number(location.port) || (secure ? 443 : 80);
    this.echo = new Echo({
      broadcaster: 'reverb',
      key,
      wsHost: location.hostname,
      wsPort: port,
      wssPort: port,
      forceTLS: secure,
      enabledTransports: ['ws', 'wss'],
      authEndpoint: '/broadcasting/auth',
      bearerToken: this.token,
      Pusher,
    });
    const pusher = this.echo.connector.pusher;
    pusher.connection.bind('state_change', (s: { current: string }) => {
      if (s.current !== 'connected') this.setConnection(navigator.onLine ? s.current : 'offline');
    });
    const channel = this.me.channel.replace(/^private-/, '');
    this.echo
      .private(channel)
      .listen('.incoming_call', (e: IncomingCallEvent) => this.onIncoming(e))
      .listen('.call_ended', (e: CallEndedEvent) => this.onEnded(e))
      .listen('.call_state_changed', (e: CallStateChangedEvent) => this.onStateChanged(e))
      .error((err: unknown) => this.log(`channel refused: ${JSON.stringify(err)}`))
      .subscribed(() => {
        this.setConnection('connected');
        // Also after every reconnect: anything sent while the socket was down is read back.
        void this.resync('subscribed');
      });
  }

  /** Whether an event is older than what the page has seen of the call (then it is dropped). */
  private stale(id: string, version: number | undefined): boolean {
    return typeof version === 'number' && version < (this.versions.get(id) ?? 0);
  }

  /** Records the version of an event the page accepted. */
  private seen(id: string, version: number | undefined): void {
    if (typeof version === 'number') this.versions.set(id, Math.max(version, this.versions.get(id) ?? 0));
  }

  private onIncoming(e: IncomingCallEvent): void {
    if (this.stale(e.call_session_id, e.version) || this.ignored.has(e.call_session_id)) return;
    this.seen(e.call_session_id, e.version);
    if (this.cards.has(e.call_session_id)) return;
    this.showCard(e.call_session_id, e.from);
  }

  private onEnded(e: CallEndedEvent): void {
    if (this.stale(e.call_session_id, e.version)) return;
    this.seen(e.call_session_id, e.version);
    const id = e.call_session_id;
    switch (e.reason) {
      case 'answered_elsewhere':
        if (e.device_id === this.me.device_id) this.finishCard(id, 'Answered here', 'ACTIVE');
        else this.finishCard(id, `Answered on ${this.deviceLabel(e.device_id)}`, 'ENDED', 'websocket');
        if (e.device_id && e.device_id !== this.me.device_id && !this.badge) {
          this.setBadge({ callId: id, deviceId: e.device_id, state: 'ACTIVE', since: Date.now() });
        }
        break;
      case 'declined_elsewhere':
        this.finishCard(id, e.device_id === this.me.device_id ? 'Declined' : `Declined on ${this.deviceLabel(e.device_id)}`, 'ENDED', 'websocket');
        break;
      case 'caller_cancelled':
        this.finishCard(id, 'Caller hung up', 'MISSED', 'websocket');
        break;
      case 'timeout':
        this.finishCard(id, 'Missed', 'MISSED', 'websocket');
        break;
      case 'busy':
        this.finishCard(id, 'Busy on another call', 'ENDED', 'websocket');
        break;
      default:
        this.finishCard(id, 'Call ended', 'ENDED', 'websocket');
        if (this.badge?.callId === id) this.setBadge(null);
    }
    this.historySoon();
  }

  private onStateChanged(e: CallStateChangedEvent): void {
    if (this.stale(e.call_session_id, e.version)) return;
    // Older servers spelled states in lower case; the canonical names are upper case.
    const raw = typeof e.state === 'string' ? e.state.toUpperCase() : e.state;
    if (!isCallState(raw)) {
      this.log(`unknown state ${JSON.stringify(e.state)} for call ${e.call_session_id}; resynchronising`);
      void this.resync('unknown state');
      return;
    }
    const device = e.device_id ?? '';
    const key = `${e.call_session_id}/${device}`;
    const previous = e.previous_state ?? this.states.get(key);
    if (previous && previous !== raw && !isLegal(previous, raw)) {
      this.log(`illegal jump ${previous} -> ${raw} on ${this.deviceLabel(device)} (call ${e.call_session_id}); resynchronising`);
      this.states.delete(key);
      void this.resync('illegal jump');
      return;
    }
    this.states.set(key, raw);
    this.seen(e.call_session_id, e.version);
    if (device === this.me.device_id) return;
    if (ON_CALL.includes(raw)) {
      const since = this.badge?.callId === e.call_session_id ? this.badge.since : Date.now();
      this.setBadge({ callId: e.call_session_id, deviceId: device, state: raw, since });
    } else if (isTerminal(raw) || raw === 'DISCONNECTING' || raw === 'DROPPED') {
      if (this.badge?.callId === e.call_session_id) this.setBadge(null);
      this.historySoon();
    }
  }

  private showCard(id: string, from: string): void {
    const status = h('p', { class: 'card-status', 'data-testid': 'card-status' }, 'Incoming call');
    const answer = h('button', { 'data-testid': 'answer', class: 'answer' }, 'Answer');
    const decline = h('button', { 'data-testid': 'decline', class: 'decline' }, 'Decline');
    const ignore = h('button', { 'data-testid': 'ignore', class: 'secondary' }, 'Ignore');
    const el = h(
      'article',
      { class: 'card', 'data-testid': 'incoming-call', 'data-call-session-id': id },
      status,
      h('p', { class: 'caller', 'data-testid': 'caller' }, from),
      h('div', { class: 'actions' }, answer, decline, ignore),
    );
    const card: Card = { el, status, done: false };
    this.cards.set(id, card);
    this.cardsEl.append(el);
    this.states.set(`${id}/${this.me.device_id}`, 'RINGING_INBOUND');
    this.reportSelf(id, 'IDLE', 'RINGING_INBOUND');
    answer.addEventListener('click', () => {
      this.post(`/api/voip/sandbox/calls/${encodeURIComponent(id)}/answer`).catch((e: ApiError) =>
        this.log(e.status === 404 ? 'answer this call in your SIP client' : `answer failed: ${e.message}`),
      );
    });
    decline.addEventListener('click', () => {
      this.post(`/api/voip/calls/${encodeURIComponent(id)}/decline`)
        .then(() => this.finishCard(id, 'Declined', 'ENDED'))
        .catch((e: ApiError) => this.log(`decline failed: ${e.message}`));
    });
    ignore.addEventListener('click', () => {
      this.ignored.add(id);
      this.post(`/api/voip/calls/${encodeURIComponent(id)}/ignore`).catch((e: ApiError) => this.log(`ignore failed: ${e.message}`));
      this.removeCard(id);
    });
  }

  /** This device's own transition, reported like the phone apps' agents do (the timeline and
   *  the operator's dismissal latency read it). */
  private reportSelf(id: string, from: CallState, to: CallState, channel?: 'websocket' | 'poll'): void {
    this.seq += 1;
    const body = { seq: this.seq, from, to, at: Date.now(), channel, socket_id: this.echo?.socketId() };
    this.post(`/api/voip/calls/${encodeURIComponent(id)}/events`, body)
      .then(() => this.states.set(`${id}/${this.me.device_id}`, to))
      .catch((e: ApiError) => this.log(`report ${from} -> ${to} failed: ${e.message}`));
  }

  /** Shows why the card stops ringing, reports how this device's ring ended (`to`, and the
   *  channel that told it), then removes the card. */
  private finishCard(id: string, outcome: string, to?: CallState, channel?: 'websocket' | 'poll'): void {
    const card = this.cards.get(id);
    if (!card || card.done) return;
    card.done = true;
    if (to && this.states.get(`${id}/${this.me.device_id}`) === 'RINGING_INBOUND') {
      this.reportSelf(id, 'RINGING_INBOUND', to, channel);
    }
    card.status.textContent = outcome;
    card.el.dataset.outcome = outcome;
    card.el.classList.add('over');
    card.el.querySelectorAll('button').forEach((b) => (b.disabled = true));
    window.setTimeout(() => this.removeCard(id), OUTCOME_MS);
  }

  private removeCard(id: string): void {
    this.cards.get(id)?.el.remove();
    this.cards.delete(id);
  }

  private setBadge(badge: Badge | null): void {
    this.badge = badge;
    // The refusal was about the call that just ended.
    if (!badge) this.collision.hidden = true;
    if (badge && this.activePoll === null) {
      this.activePoll = window.setInterval(() => void this.checkActive(), ACTIVE_POLL_MS);
    } else if (!badge && this.activePoll !== null) {
      window.clearInterval(this.activePoll);
      this.activePoll = null;
    }
    this.renderBadge();
  }

  private renderBadge(): void {
    const b = this.badge;
    if (!b) {
      this.badgeEl.replaceChildren();
      return;
    }
    this.badgeEl.replaceChildren(
      h(
        'div',
        { class: `badge state-${b.state.toLowerCase()}`, 'data-testid': 'other-device-call', 'data-state': b.state, 'data-call-session-id': b.callId },
        h('span', { class: 'dot' }),
        h('span', {}, 'On a call on '),
        h('strong', { 'data-testid': 'badge-device' }, this.deviceLabel(b.deviceId)),
        h('span', { 'data-testid': 'badge-state', class: 'pill' }, stateLabel(b.state)),
        h('span', { 'data-testid': 'badge-elapsed', class: 'elapsed' }, clock(Date.now() - b.since)),
      ),
    );
  }

  private tick(): void {
    const el = this.badgeEl.querySelector('[data-testid=badge-elapsed]');
    if (el && this.badge) el.textContent = clock(Date.now() - this.badge.since);
  }

  private async checkActive(): Promise<void> {
    try {
      const active = await this.get<{ active_calls: ActiveCall[] }>('/api/voip/my-active-call');
      if (this.badge && !active.active_calls.some((c) => c.call_session_id === this.badge!.callId)) {
        this.setBadge(null);
        this.historySoon();
      }
    } catch {
      // Offline: the next subscription resynchronises.
    }
  }

  /** Reads the whole picture back over HTTP (ringing calls, the active call, history). */
  private resync(why: string): Promise<void> {
    if (!this.syncing) {
      this.syncing = this.doResync(why).finally(() => (this.syncing = null));
    }
    return this.syncing;
  }

  private async doResync(why: string): Promise<void> {
    try {
      const [ringing, active] = await Promise.all([
        this.get<{ ringing_calls: RingingCall[] }>('/api/voip/my-ringing-calls'),
        this.get<{ active_calls: ActiveCall[] }>('/api/voip/my-active-call'),
      ]);
      const ringingHere = new Set<string>();
      for (const call of ringing.ringing_calls) {
        this.versions.set(call.call_session_id, Math.max(call.version, this.versions.get(call.call_session_id) ?? 0));
        if (call.status !== 'ringing' || this.ignored.has(call.call_session_id)) continue;
        ringingHere.add(call.call_session_id);
        if (!this.cards.has(call.call_session_id)) this.showCard(call.call_session_id, call.from);
      }
      for (const [id, card] of this.cards) {
        if (card.done || ringingHere.has(id)) continue;
        const view = await this.get<{ status: string; device_id: string | null; reason: string | null }>(
          `/api/voip/call-status/${encodeURIComponent(id)}`,
        );
        const missed = view.status === 'missed';
        this.finishCard(id, outcomeText(view, (d) => this.deviceLabel(d)), missed ? 'MISSED' : 'ENDED', 'poll');
      }
      const other = active.active_calls.find((c) => c.device_id && c.device_id !== this.me.device_id);
      if (other?.device_id) {
        const state = await this.lastReportedState(other.call_session_id, other.device_id);
        const since = this.badge?.callId === other.call_session_id ? this.badge.since : other.started_at;
        this.states.set(`${other.call_session_id}/${other.device_id}`, state);
        this.setBadge({ callId: other.call_session_id, deviceId: other.device_id, state, since });
      } else {
        this.setBadge(null);
      }
      await this.loadHistory(true);
      this.note(`synchronised (${why})`);
    } catch (err) {
      this.log(`resynchronisation failed: ${(err as Error).message}`);
    }
  }

  /** The answering device's last reported state from the call's timeline (ACTIVE if it reported
   *  none yet). */
  private async lastReportedState(callId: string, deviceId: string): Promise<CallState> {
    const detail = await this.get<{ timeline: TimelineEntry[] }>(`/api/voip/calls/${encodeURIComponent(callId)}`);
    const reports = detail.timeline.filter((t) => t.device_id === deviceId && t.kind === 'device.transition');
    const last = reports.at(-1)?.to_state;
    return last && isCallState(last) && ON_CALL.includes(last) ? last : 'ACTIVE';
  }

  private async dial(to: string): Promise<void> {
    this.collision.hidden = true;
    if (!to) return;
    try {
      await this.post('/api/voip/calls', { to });
      this.log(`calling ${to}`);
    } catch (err) {
      const e = err as ApiError;
      if (e.code === 'call_collision') {
        const on = this.badge ? ` on ${this.deviceLabel(this.badge.deviceId)}` : '';
        this.collision.textContent = `You are already on a call${on}. Hang up there before placing another call.`;
        this.collision.hidden = false;
      } else {
        this.log(`call refused: ${e.message}`);
      }
    }
  }

  /** Reloads the history now and once more shortly after: an event can arrive before the
   *  webhook that completes the call's record (its end time) has been committed. */
  private historySoon(): void {
    void this.loadHistory(true).catch(() => undefined);
    window.setTimeout(() => void this.loadHistory(true).catch(() => undefined), 1500);
  }

  private async loadHistory(reset: boolean): Promise<void> {
    const cursor = reset ? '' : `&cursor=${encodeURIComponent(this.historyCursor ?? '')}`;
    const page = await this.get<{ items: CallRecord[]; next_cursor: string | null }>(`/api/voip/calls?limit=${HISTORY_PAGE}${cursor}`);
    const rows = page.items.map((c) => this.historyRow(c));
    if (reset) this.historyBody.replaceChildren(...rows);
    else this.historyBody.append(...rows);
    this.historyCursor = page.next_cursor;
    this.historyMore.hidden = !page.next_cursor;
  }

  private historyRow(c: CallRecord): HTMLElement {
    const status = historyStatus(c);
    const duration = c.answered_at && c.ended_at ? clock(c.ended_at - c.answered_at) : '';
    const who = c.direction === 'outbound' ? `to ${c.to}` : `from ${c.from}`;
    const row = h(
      'tr',
      { 'data-testid': 'history-row', 'data-call-session-id': c.call_session_id, 'data-status': status, class: `status-${status}` },
      h('td', {}, new Date(c.started_at).toLocaleString()),
      h('td', {}, who),
      h('td', { 'data-testid': 'history-status' }, h('span', { class: `pill ${status}` }, status)),
      h('td', { 'data-testid': 'history-device' }, c.answered_device ? this.deviceLabel(c.answered_device) : ''),
      h('td', { 'data-testid': 'history-duration' }, duration),
    );
    row.addEventListener('click', () => void this.openTimeline(c.call_session_id));
    return row;
  }

  private async openTimeline(id: string): Promise<void> {
    const detail = await this.get<{ call: CallRecord; legs: LegRecord[]; timeline: TimelineEntry[] }>(
      `/api/voip/calls/${encodeURIComponent(id)}`,
    );
    const start = detail.call.started_at;
    const at = (t: number | null) => (t === null ? '' : `+${((t - start) / 1000).toFixed(2)} s`);
    const close = h('button', { class: 'link' }, 'Close');
    close.addEventListener('click', () => (this.timelineEl.hidden = true));
    const legs = detail.legs.map((l) =>
      h(
        'tr',
        { 'data-testid': 'timeline-leg' },
        h('td', {}, l.device_id ? this.deviceLabel(l.device_id) : 'caller'),
        h('td', {}, at(l.started_at)),
        h('td', {}, l.answered_at ? `answered ${at(l.answered_at)}` : ''),
        h('td', {}, l.ended_at ? `${l.hangup_cause ?? 'ended'} ${at(l.ended_at)}` : l.status),
      ),
    );
    const entries = detail.timeline.map((t) =>
      h(
        'li',
        { 'data-testid': 'timeline-entry' },
        h('span', { class: 'at' }, at(t.at)),
        ` ${t.device_id ? this.deviceLabel(t.device_id) : t.source}: ${t.kind}`,
        t.from_state || t.to_state ? ` ${t.from_state ?? ''} → ${t.to_state ?? ''}` : '',
        channelOf(t.detail) ? ` (via ${channelOf(t.detail)})` : '',
      ),
    );
    const voicemail = detail.call.recording_url
      ? h('audio', { controls: '', src: detail.call.recording_url, 'data-testid': 'voicemail' })
      : null;
    this.timelineEl.replaceChildren(
      h('h2', {}, `Call from ${detail.call.from} — ${historyStatus(detail.call)}`, close),
      ...(voicemail ? [voicemail] : []),
      h('h3', {}, 'Devices rung'),
      h('table', {}, h('thead', {}, h('tr', {}, ...['Device', 'Rang', 'Answered', 'Ended'].map((t) => h('th', {}, t)))), h('tbody', {}, ...legs)),
      h('h3', {}, 'Timeline'),
      h('ol', {}, ...entries),
    );
    this.timelineEl.dataset.callSessionId = id;
    this.timelineEl.hidden = false;
  }
}

/** The history's four statuses (answered, missed, declined, voicemail), else the raw one. */
function historyStatus(c: CallRecord): string {
  if (c.status === 'voicemail' || c.status === 'declined' || c.status === 'missed') return c.status;
  if (c.answered_at !== null) return 'answered';
  return c.status;
}

/** The dismissal channel a device report names, when it names one. */
function channelOf(detail: unknown): string | null {
  const d = detail as { channel?: unknown } | null;
  return d && typeof d.channel === 'string' ? d.channel : null;
}

/** The card's last words for a call that stopped ringing while the page was away. */
function outcomeText(view: { status: string; device_id: string | null; reason: string | null }, label: (d: string | null) => string): string {
  switch (view.status) {
    case 'answered_elsewhere':
      return `Answered on ${label(view.device_id)}`;
    case 'declined_elsewhere':
      return `Declined on ${label(view.device_id)}`;
    case 'answered_here':
      return 'Answered here';
    case 'missed':
      return view.reason === 'caller_cancelled' ? 'Caller hung up' : 'Missed';
    default:
      return 'Call ended';
  }
}
