// The operator view: calls ringing and up now, per-channel dismissal latency over the last
// hour, and the canonical state machine drawn from the generated module (the same table the
// server validates against).
import { api, clock, h, signInForm, takeToken } from './api';
import { STATES, TERMINAL_STATES, TRANSITIONS, type CallState } from './generated/machine';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** Columns by distance from IDLE along the table's rows; one box per state, one arrow per
 *  (from, to) pair with its triggers as the tooltip. */
export function stateDiagram(): SVGElement {
  const depth = new Map<CallState, number>([['IDLE', 0]]);
  const queue: CallState[] = ['IDLE'];
  while (queue.length) {
    const s = queue.shift()!;
    for (const row of TRANSITIONS) {
      if (row.from === s && !depth.has(row.to)) {
        depth.set(row.to, depth.get(s)! + 1);
        queue.push(row.to);
      }
    }
  }
  // Terminal states share the last column, so every arrow into them runs left to right.
  const last = Math.max(...STATES.filter((s) => !TERMINAL_STATES.includes(s)).map((s) => depth.get(s) ?? 0)) + 1;
  const columns = new Map<number, CallState[]>();
  for (const s of STATES) {
    const d = TERMINAL_STATES.includes(s) ? last : (depth.get(s) ?? 0);
    columns.set(d, [...(columns.get(d) ?? []), s]);
  }
  const boxW = 150;
  const boxH = 30;
  const colGap = 70;
  const rowGap = 26;
  const pos = new Map<CallState, { x: number; y: number }>();
  let height = 0;
  for (const [d, states] of columns) {
    states.forEach((s, i) => pos.set(s, { x: 10 + d * (boxW + colGap), y: 10 + i * (boxH + rowGap) }));
    height = Math.max(height, 10 + states.length * (boxH + rowGap));
  }
  const width = 10 + columns.size * (boxW + colGap);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', 'data-testid': 'state-diagram' });
  const defs = svg('defs', {});
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#6b7280' }));
  defs.append(marker);
  root.append(defs);
  const pairs = new Map<string, string[]>();
  for (const row of TRANSITIONS) {
    const k = `${row.from}>${row.to}`;
    pairs.set(k, [...(pairs.get(k) ?? []), row.trigger]);
  }
  for (const [k, triggers] of pairs) {
    const [from, to] = k.split('>') as [CallState, CallState];
    const a = pos.get(from)!;
    const b = pos.get(to)!;
    const forward = b.x > a.x;
    const x1 = forward ? a.x + boxW : a.x;
    const x2 = forward ? b.x : b.x + boxW;
    const y1 = a.y + boxH / 2;
    const y2 = b.y + boxH / 2;
    const bend = forward ? 0 : -40;
    const path = svg('path', {
      d: `M ${x1} ${y1} C ${x1 + (forward ? 30 : -30)} ${y1 + bend}, ${x2 + (forward ? -30 : 30)} ${y2 + bend}, ${x2} ${y2}`,
      fill: 'none',
      stroke: triggers.every((t) => t === 'internal_error') ? '#d1d5db' : '#6b7280',
      'stroke-width': 1.2,
      'marker-end': 'url(#arrow)',
      'data-edge': k,
    });
    const title = svg('title', {});
    title.textContent = `${from} → ${to}: ${triggers.join(', ')}`;
    path.append(title);
    root.append(path);
  }
  for (const s of STATES) {
    const p = pos.get(s)!;
    const g = svg('g', { 'data-state': s });
    const terminal = TERMINAL_STATES.includes(s);
    g.append(svg('rect', { x: p.x, y: p.y, width: boxW, height: boxH, rx: terminal ? 15 : 4, fill: terminal ? '#fee2e2' : '#eef2ff', stroke: '#4f46e5' }));
    const text = svg('text', { x: p.x + boxW / 2, y: p.y + boxH / 2 + 4, 'text-anchor': 'middle', 'font-size': 11, 'font-family': 'ui-monospace, monospace' });
    text.textContent = s;
    g.append(text);
    root.append(g);
  }
  return root;
}

interface LiveCall {
  call_session_id: string;
  user_id: string;
  from: string;
  to: string;
  direction: string;
  status: string;
  answered_device: string | null;
  started_at: number;
  answered_at: number | null;
}

interface ChannelLatency {
  channel: string;
  count: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

const REFRESH_MS = 2000;

function liveTable(title: string, testid: string, calls: LiveCall[]): HTMLElement {
  const rows = calls.map((c) =>
    h(
      'tr',
      { 'data-testid': `${testid}-row`, 'data-call-session-id': c.call_session_id },
      h('td', {}, c.from),
      h('td', {}, c.to),
      h('td', {}, c.user_id),
      h('td', {}, c.answered_device ?? ''),
      h('td', {}, clock(Date.now() - (c.answered_at ?? c.started_at))),
    ),
  );
  return h(
    'div',
    { 'data-testid': testid },
    h('h3', {}, `${title} (${calls.length})`),
    h('table', {}, h('thead', {}, h('tr', {}, ...['From', 'To', 'User', 'Device', 'For'].map((t) => h('th', {}, t)))), h('tbody', {}, ...rows)),
  );
}

/** Grouped bars: p50, p95, p99 per channel, on one scale. */
export function latencyChart(channels: ChannelLatency[]): SVGElement {
  const width = 640;
  const height = 220;
  const left = 50;
  const bottom = 40;
  const max = Math.max(1, ...channels.flatMap((c) => [c.p50_ms ?? 0, c.p95_ms ?? 0, c.p99_ms ?? 0]));
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', 'data-testid': 'latency-chart' });
  const plotH = height - bottom - 10;
  const groupW = (width - left) / Math.max(1, channels.length);
  const colours = ['#6366f1', '#f59e0b', '#ef4444'];
  for (let i = 0; i <= 4; i += 1) {
    const y = 10 + plotH - (plotH * i) / 4;
    root.append(svg('line', { x1: left, x2: width, y1: y, y2: y, stroke: '#e5e7eb' }));
    const label = svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', 'font-size': 10 });
    label.textContent = `${Math.round((max * i) / 4)} ms`;
    root.append(label);
  }
  channels.forEach((c, gi) => {
    const g = svg('g', { 'data-channel': c.channel, 'data-count': c.count });
    [c.p50_ms, c.p95_ms, c.p99_ms].forEach((v, k) => {
      const barH = v === null ? 0 : Math.max(1, (plotH * v) / max);
      const x = left + gi * groupW + 14 + k * ((groupW - 28) / 3);
      const rect = svg('rect', { x, y: 10 + plotH - barH, width: (groupW - 28) / 3 - 4, height: barH, fill: colours[k] });
      const title = svg('title', {});
      title.textContent = `${c.channel} p${[50, 95, 99][k]}: ${v ?? '-'} ms`;
      rect.append(title);
      g.append(rect);
    });
    const label = svg('text', { x: left + gi * groupW + groupW / 2, y: height - 20, 'text-anchor': 'middle', 'font-size': 12 });
    label.textContent = `${c.channel} (${c.count})`;
    g.append(label);
    root.append(g);
  });
  const legend = svg('text', { x: width - 4, y: height - 4, 'text-anchor': 'end', 'font-size': 10 });
  legend.textContent = 'bars: p50, p95, p99 (last hour)';
  root.append(legend);
  return root;
}

function operatorView(root: HTMLElement, token: string): void {
  const live = h('section', { class: 'panel' }, h('h2', {}, 'Calls now'));
  const latency = h('section', { class: 'panel' }, h('h2', {}, 'Dismissal latency by channel'));
  const status = h('span', { class: 'conn', 'data-testid': 'connection' }, 'signed in');
  root.replaceChildren(
    h('header', {}, h('h1', {}, 'Ringmaster operator'), status),
    live,
    latency,
    h('section', { class: 'panel' }, h('h2', {}, 'Call state machine'), h('p', { class: 'hint' }, `${STATES.length} states, ${TRANSITIONS.length} transitions (hover an arrow for its triggers)`), stateDiagram()),
  );
  const refresh = async () => {
    try {
      const [calls, lat] = await Promise.all([
        api<{ ringing: LiveCall[]; active: LiveCall[] }>('/api/admin/live-calls', token),
        api<{ channels: ChannelLatency[]; truncated: boolean }>('/api/admin/dismissal-latency', token),
      ]);
      live.replaceChildren(h('h2', {}, 'Calls now'), liveTable('Ringing', 'ringing-calls', calls.ringing), liveTable('Active', 'active-calls', calls.active));
      latency.replaceChildren(
        h('h2', {}, 'Dismissal latency by channel'),
        h('p', { class: 'hint' }, 'From the backend ending the ring to each device reporting its dismissal, by the channel that reached it first.' + (lat.truncated ? ' (busiest hour: oldest part only)' : '')),
        latencyChart(lat.channels),
      );
      status.textContent = 'live';
    } catch (e) {
      status.textContent = `refresh failed: ${(e as Error).message}`;
    }
  };
  void refresh();
  window.setInterval(() => void refresh(), REFRESH_MS);
}

export function startOperator(root: HTMLElement): void {
  const token = takeToken('admin_token');
  if (!token) {
    root.replaceChildren(
      h('header', {}, h('h1', {}, 'Ringmaster operator')),
      signInForm('Admin token', (t) => {
        sessionStorage.setItem('rm.admin_token', t);
        startOperator(root);
      }),
    );
    return;
  }
  api('/api/admin/live-calls', token)
    .then(() => operatorView(root, token))
    .catch((e) => {
      sessionStorage.removeItem('rm.admin_token');
      root.replaceChildren(
        h('p', { class: 'error' }, `Sign-in failed: ${e.message}`),
        signInForm('Admin token', (t) => {
          sessionStorage.setItem('rm.admin_token', t);
          startOperator(root);
        }),
      );
    });
}
