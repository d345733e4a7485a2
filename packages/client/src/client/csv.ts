import { vbiError } from '@vbi/core/errors';

/**
 * RFC 4180 CSV: fields separated by commas, records by CRLF or LF; a field in double quotes may
 * hold commas, quotes (doubled) and line breaks. A UTF-8 BOM is skipped; blank lines are
 * dropped. BAD_REQUEST (details.line) for an unterminated quote or text after a closing quote.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let quoted = false;
  let fieldStart = true;
  const endField = () => {
    row.push(field);
    field = '';
    fieldStart = true;
  };
  const endRow = () => {
    endField();
    if (!(row.length === 1 && row[0] === '')) rows.push(row);
    row = [];
  };
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
          const next = text[i + 1];
          if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
            throw vbiError('BAD_REQUEST', `CSV line ${line}: text after a closing quote`, { line });
          }
        }
      } else {
        if (c === '\n') line++;
        field += c;
      }
      continue;
    }
    if (c === '"' && fieldStart) {
      quoted = true;
      fieldStart = false;
    } else if (c === ',') {
      endField();
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
    } else {
      field += c;
      fieldStart = false;
    }
  }
  if (quoted) throw vbiError('BAD_REQUEST', `CSV line ${line}: a quoted field is not closed`, { line });
  if (field !== '' || row.length > 0) endRow();
  return rows;
}

/** Records as objects keyed by the header row (names trimmed, lower-cased), numbered from 1 after the header. */
export function csvRecords(text: string): Array<{ record: number; values: Record<string, string> }> {
  const rows = parseCsv(text);
  if (rows.length === 0) throw vbiError('BAD_REQUEST', 'the CSV file is empty (a header row is required)');
  const header = rows[0].map((h) => h.trim().toLowerCase());
  const dup = header.find((h, i) => header.indexOf(h) !== i);
  if (dup !== undefined) throw vbiError('BAD_REQUEST', `CSV header names column '${dup}' twice`);
  return rows.slice(1).map((r, k) => {
    if (r.length !== header.length) {
      throw vbiError('BAD_REQUEST', `CSV record ${k + 1}: ${r.length} fields, the header has ${header.length}`, { record: k + 1 });
    }
    return { record: k + 1, values: Object.fromEntries(header.map((h, j) => [h, r[j].trim()])) };
  });
}
