import type { Knex } from 'knex';
import { claimMap } from './pg-meter-map';

/**
 * This process's hold on its shard (docs/operations.md, "Several processes, several tokens"):
 * the ownership epoch every group's map write must carry, and why the shard is lost once another
 * process took it over (then nothing more commits here: SHARD_LOST).
 */
export class ShardOwnership {
  epoch: number | undefined;
  lost: string | null = null;

  /** Takes the shard: a new ownership epoch; a process that held it before can commit nothing more. */
  async claim(db: Knex): Promise<void> {
    this.epoch = await claimMap(db);
    this.lost = null;
  }
}
