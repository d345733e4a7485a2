import * as graphene from 'graphene-pk11';
import { DataObject } from './hsm-module';
import * as ops from './async-ops';
import type { ModuleLifecycle } from './module-lifecycle';

/** CKA_APPLICATION of every data object the service creates (checkpoint ring, markers, the probe's). */
export const DATA_APPLICATION = 'vbi-postage-meter';

/** The module's data objects (checkpoint ring, module markers): private token objects, never modified in place. */

export function listDataObjects(m: ModuleLifecycle, prefix: string): Promise<DataObject[]> {
  return m.run('list data objects', (s) => {
    const found = s.find({ class: graphene.ObjectClass.DATA, application: DATA_APPLICATION, token: true });
    const out: DataObject[] = [];
    for (let i = 0; i < found.length; i++) {
      const a = found.items(i).getAttribute({ label: null, value: null });
      const label = String(a.label);
      if (label.startsWith(prefix)) out.push({ label, value: Buffer.from(a.value as Buffer) });
    }
    return out;
  });
}

export async function createDataObject(m: ModuleLifecycle, obj: DataObject): Promise<void> {
  await m.run('create data object', (s) =>
    ops.createObject(s, {
      class: graphene.ObjectClass.DATA,
      token: true,
      private: true,
      modifiable: false,
      application: DATA_APPLICATION,
      label: obj.label,
      value: obj.value,
    }));
}

export async function destroyDataObject(m: ModuleLifecycle, label: string): Promise<void> {
  await m.run('destroy data object', (s) => ops.destroyFound(s, { class: graphene.ObjectClass.DATA, application: DATA_APPLICATION, label }));
}
