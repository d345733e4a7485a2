import type { PrintItemBody } from '@vbi/core/protocol/bodies';

/** A print item as the module takes it: the request's item with its dynamic password decoded. */
export type SessionItem = Pick<PrintItemBody, 'counter' | 'clientTime' | 'destinationZip' | 'postage'> & { dynamicPassword: Buffer };
