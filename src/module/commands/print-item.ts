
export interface SessionItem {
  counter: number;
  clientTime: number;
  destinationZip: string;
  postage: number;
  dynamicPassword: Buffer;
}

/** AAD of an indicium encrypted to a session (docs/protocol.md, section 4). */
export function indiciumAad(sessionId: string, counter: number): Buffer {
  return Buffer.from(`VBI-INDICIUM\n${sessionId}\n${counter}`, 'utf8');
}
