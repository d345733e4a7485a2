/**
 * The rows of one print (or correction) request, written in the request's transaction: the
 * statement is in the print_batches repository (packages/server/src/db/repositories/print-batches.ts).
 */
export { storePrintBatch, type PrintBatchRows } from '../db/repositories/print-batches';
