// Injected into the browser bundle by scripts/build-web.ts: the shared modules use Buffer.
export { Buffer } from 'buffer';
