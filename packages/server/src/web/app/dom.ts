import { codeOf } from '@vbi/client/web/client/web-client';

type Child = Node | string | number | null | undefined | false;

/** A DOM element with attributes (string values; `on*` functions become listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, unknown> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false || v === null) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v as EventListener);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'number' ? String(c) : c);
  return el;
}

let ids = 0;

/** A labelled input (the label wraps it, so screen readers and clicks find it). */
export function field(label: string, input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, hint?: string): HTMLLabelElement {
  input.id ||= `f${++ids}`;
  if (hint) {
    const hintId = `${input.id}-hint`;
    input.setAttribute('aria-describedby', hintId);
    return h('label', {}, label, input, h('span', { id: hintId, class: 'note' }, hint));
  }
  return h('label', {}, label, input);
}

/** A box that announces the outcome of an action: an error with its stable code, or a success. */
export function outcome(): { el: HTMLElement; error(e: unknown): void; ok(text: string | Node): void; clear(): void } {
  const el = h('div', { role: 'alert', 'aria-live': 'assertive' });
  return {
    el,
    error(e) {
      el.className = 'error';
      el.replaceChildren(h('code', { 'data-code': codeOf(e) }, codeOf(e)), ': ', (e as Error)?.message ?? String(e));
    },
    ok(text) {
      el.className = 'ok';
      el.replaceChildren(text);
    },
    clear() {
      el.className = '';
      el.replaceChildren();
    },
  };
}

/** Runs an action from a form: disables its buttons meanwhile and reports failures in `out`. */
export function onSubmit(form: HTMLFormElement, out: ReturnType<typeof outcome>, run: () => Promise<void>): void {
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const buttons = [...form.querySelectorAll('button')];
    buttons.forEach((b) => (b.disabled = true));
    out.clear();
    run().catch((e: unknown) => out.error(e)).finally(() => buttons.forEach((b) => (b.disabled = false)));
  });
}

/** A definition list of name/value pairs. */
export function fieldList(pairs: Array<[string, unknown]>, attrs: Record<string, unknown> = {}): HTMLDListElement {
  const dl = h('dl', { class: 'fields', ...attrs });
  for (const [k, v] of pairs) dl.append(h('dt', {}, k), h('dd', { 'data-field': k }, v === undefined || v === null ? '—' : String(v)));
  return dl;
}

/** A table from header names and rows. */
export function table(caption: string, head: string[], rows: Array<Array<string | number | Node>>): HTMLTableElement {
  return h('table', {}, h('caption', {}, caption), h('thead', {}, h('tr', {}, ...head.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))));
}

/** Offers bytes as a download named `name`. */
export function download(name: string, data: Uint8Array | string, type: string): void {
  const blob = new Blob([typeof data === 'string' ? data : new Uint8Array(data)], { type });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The text of a file the user chose. */
export function readFileBytes(file: File): Promise<Uint8Array> {
  return file.arrayBuffer().then((b) => new Uint8Array(b));
}
