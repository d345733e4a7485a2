/**
 * The public SDK surface, the entry of the separately installable client package
 * (packages/vbi-client, built by scripts/build-client.ts). Re-exports only.
 */
export { VbiClient } from './vbi-client';
export type {
  PrintOutcome, PrintProgress, RecoveredRequest, RedeliveredIndicium, RedeliverySelector, RefundRequest, VbiClientOptions,
} from './vbi-client';
export type { RegistrationRequest } from './registration';
export type { PrintItemRequest } from './print-item';
export type { PrintedItem } from './print-results';
export type { ClientSession } from './session';
export type { ClientState, KnownModule } from './client-state';
export type { FetchFn, HttpClientOptions } from './http';
export { NetworkError, ServiceError } from './http';
export type {
  BalanceResult, HeartbeatAnswer, HistoryEntry, PurchaseResult, SessionOpened, VerifyAnswer, WireModule, WirePrintItem,
} from './wire';
export { formatMills, parseMills } from './money';
export { isVbiError, VbiError } from '@vbi/core/errors';
export type { ErrorCode } from '@vbi/core/errors';
