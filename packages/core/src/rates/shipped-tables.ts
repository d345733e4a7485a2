import table202507 from './tables/2025-07.json';
import table202601 from './tables/2026-01.json';
import { RateTable, validateRateTables } from './rate-table';

/**
 * The rate tables shipped with this build, oldest first. Imported as modules (resolveJsonModule)
 * so tsc copies them into dist/ next to the code that reads them. To publish new prices, add a
 * file with the next version and list it here; never edit a table that has been in effect.
 * Validated on load: a broken table stops the service at startup.
 */
export const SHIPPED_RATE_TABLES: readonly RateTable[] = Object.freeze(validateRateTables([table202507, table202601]));
