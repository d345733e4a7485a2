/**
 * Run as a separate process by the ring tests: powers a module on from the token files alone
 * and prints what its ring and state are, proving they survive a process restart.
 */
import { startEngine, closeTestLibrary } from './hsm';

async function main(): Promise<void> {
  const label = process.argv[2];
  const { module, engine } = await startEngine(label);
  const st = engine.status();
  process.stdout.write(JSON.stringify({
    state: st.state,
    reason: st.reason ?? null,
    seqs: engine.ringEntries().map((e) => e.checkpoint.seq),
    newest: engine.ringEntries().at(-1)?.bytes.toString('hex') ?? null,
    mapEpoch: st.map.epoch,
  }));
  await module.close();
  await closeTestLibrary();
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
