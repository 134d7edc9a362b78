// `npm run dev-cloud`: runs the local Oboto Cloud in the foreground with the defaults
// (port 54321, demo seed). Extra arguments pass through: `npm run dev-cloud -- --port 0`.
import { spawn } from 'node:child_process';
import { devcloudBinary } from './devcloud-process.mjs';

const child = spawn(devcloudBinary(), process.argv.slice(2), { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
