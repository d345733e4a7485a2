import { Meter } from './meter';
import { balancePage } from './pages/balance-page';
import { buyPage } from './pages/buy-page';
import { historyPage } from './pages/history-page';
import { meterPage } from './pages/meter-page';
import { operatorPage } from './pages/operator-page';
import { printPage } from './pages/print-page';
import { registerPage } from './pages/register-page';
import { verifyPage } from './pages/verify-page';

/** A page: draws itself into the view. */
export type Page = (view: HTMLElement, meter: Meter) => void | Promise<void>;

const PAGES: Record<string, { title: string; page: Page }> = {
  '/': { title: 'Meter', page: meterPage },
  '/register': { title: 'Register', page: registerPage },
  '/balance': { title: 'Balance and registers', page: balancePage },
  '/buy': { title: 'Buy postage', page: buyPage },
  '/print': { title: 'Print', page: printPage },
  '/history': { title: 'History, reprint and refunds', page: historyPage },
  '/verify': { title: 'Verify a label', page: verifyPage },
  '/operator': { title: 'Operator', page: operatorPage },
};

function route(view: HTMLElement, meter: Meter): void {
  const path = location.hash.replace(/^#/, '') || '/';
  const entry = PAGES[path] ?? PAGES['/'];
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${path}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${entry.title} — VBI postage meter`;
  view.replaceChildren();
  view.append(Object.assign(document.createElement('h2'), { textContent: entry.title }));
  void Promise.resolve(entry.page(view, meter)).then(() => view.focus());
}

document.addEventListener('DOMContentLoaded', () => {
  const view = document.getElementById('view')!;
  const meter = new Meter(document.getElementById('session')!);
  window.addEventListener('hashchange', () => route(view, meter));
  window.addEventListener('beforeunload', () => void meter.client?.closeSession().catch(() => undefined));
  route(view, meter);
});
