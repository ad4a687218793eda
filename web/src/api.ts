// HTTP helpers shared by the user and operator views.

/** An error answer of the API (`{"error":{"code","message"}}`) or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/** Calls `path` with the bearer `token`; resolves to the JSON body or throws `ApiError`. */
export async function api<T>(path: string, token: string | null, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (init.body) headers['Content-Type'] = 'application/json';
  let resp: Response;
  try {
    resp = await fetch(path, { ...init, headers: { ...headers, ...(init.headers as Record<string, string>) } });
  } catch (err) {
    throw new ApiError(0, 'network', `network error: ${String(err)}`);
  }
  const text = await resp.text();
  const body = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const e = body?.error ?? {};
    throw new ApiError(resp.status, e.code ?? 'http_error', e.message ?? `HTTP ${resp.status}`, e.details);
  }
  return body as T;
}

/** A token from `?NAME=` (moved to session storage and removed from the address bar) or from
 *  session storage. */
export function takeToken(name: string): string | null {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get(name);
  if (fromUrl) {
    sessionStorage.setItem(`rm.${name}`, fromUrl);
    url.searchParams.delete(name);
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(`rm.${name}`);
}

/** Element builder: `h('div', {class: 'x', 'data-testid': 'y'}, child, 'text')`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | undefined> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

/** A sign-in form; calls `onToken` with what was typed. */
export function signInForm(label: string, onToken: (token: string) => void): HTMLElement {
  const input = h('input', { 'data-testid': 'token-input', type: 'password', placeholder: label, autocomplete: 'off' });
  const button = h('button', { 'data-testid': 'sign-in', type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'sign-in' }, h('label', {}, label, input), button);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (token) onToken(token);
  });
  return form;
}

/** `m:ss` (or `h:mm:ss`) of a duration in milliseconds. */
export function clock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** A device's name for people: iPhone, Android, Web. */
export function platformLabel(platform: string | undefined): string {
  switch (platform) {
    case 'ios':
      return 'iPhone';
    case 'android':
      return 'Android';
    case 'web':
      return 'Web';
    default:
      return 'another device';
  }
}
